package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// pullSlack is how long after a pull request's expiry a puller still waits
// for JetStream to end it before giving up on it.
const pullSlack = 5 * time.Second

// jsAckPrefix starts the reply subject of every message JetStream delivers.
const jsAckPrefix = "$JS.ACK."

// errConsumerDeleted is a pull request's end when its consumer is deleted.
var errConsumerDeleted = errors.New("async consumer deleted")

// puller asks JetStream for one consumer's messages and receives them on a
// subscription of its own, one pull request at a time.
//
// JetStream counts a message as delivered once it sends it to a request's
// reply subject; a message sent after the client stopped listening is lost
// to the process and delivered again only after AckWait, after a restart
// too. So a puller never abandons a request (as a fetch whose context ends
// does): it listens until JetStream ends the request (with its last message,
// or a status such as 408 at its expiry), and gives up on one only when
// nothing has ended it pullSlack after its expiry, or the connection is
// closed.
//
// A puller is used by one goroutine; its subscription's callback only hands
// messages over.
type puller struct {
	nc     *nats.Conn
	closed <-chan struct{} // closed with the connection
	next   string          // the consumer's next-message API subject
	inbox  string
	sub    *nats.Subscription
	msgs   chan *nats.Msg
	quit   chan struct{}
	n      int          // requests made
	open   *pullRequest // the request that may still deliver, or nil
}

type pullRequest struct {
	reply string
	left  int         // messages still to come
	timer *time.Timer // fires when the puller gives up on it
}

func newPuller(b *Bus, stream, consumer string) (*puller, error) {
	p := &puller{
		nc:     b.nc,
		closed: b.closed,
		next:   "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer,
		inbox:  b.nc.NewInbox(),
		msgs:   make(chan *nats.Msg),
		quit:   make(chan struct{}),
	}
	sub, err := b.nc.Subscribe(p.inbox+".*", func(m *nats.Msg) {
		select {
		case p.msgs <- m:
		case <-p.quit:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe for %s: %w", consumer, err)
	}
	// Requests bound what arrives; the subscription must never drop any.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe for %s: %w", consumer, err)
	}
	p.sub = sub
	return p, nil
}

// request asks for up to batch messages within expires. Only one request
// may be open at a time.
func (p *puller) request(batch int, expires time.Duration) error {
	p.n++
	reply := p.inbox + "." + strconv.Itoa(p.n)
	body, err := json.Marshal(struct {
		Batch   int           `json:"batch"`
		Expires time.Duration `json:"expires"`
	}{batch, expires})
	if err != nil {
		return err
	}
	if err := p.nc.PublishRequest(p.next, reply, body); err != nil {
		return fmt.Errorf("pull async events: %w", err)
	}
	p.open = &pullRequest{reply: reply, left: batch, timer: time.NewTimer(expires + pullSlack)}
	return nil
}

// giveUp returns a channel that fires when the open request is given up.
func (p *puller) giveUp() <-chan time.Time {
	if p.open == nil {
		return nil
	}
	return p.open.timer.C
}

func (p *puller) end() {
	if p.open != nil {
		p.open.timer.Stop()
		p.open = nil
	}
}

// receive takes one message of the subscription. It returns the event if m
// is one, and whether it was asked for by the open request (an event of a
// request given up on was not); otherwise m is a status, and receive
// returns the error it reports, nil for the ordinary end of a request.
func (p *puller) receive(m *nats.Msg) (event *nats.Msg, asked bool, err error) {
	if strings.HasPrefix(m.Reply, jsAckPrefix) {
		if p.open == nil {
			return m, false, nil
		}
		if p.open.left--; p.open.left == 0 {
			p.end()
		}
		return m, true, nil
	}
	status, desc := m.Header.Get("Status"), m.Header.Get("Description")
	if status == "100" || p.open == nil || m.Subject != p.open.reply {
		return nil, false, nil // a heartbeat, or about a request given up on
	}
	p.end()
	switch {
	case status == "404", status == "408":
		return nil, false, nil // no messages, or expired
	case status == "409" && strings.EqualFold(desc, "consumer deleted"):
		return nil, false, errConsumerDeleted
	case status == "503":
		return nil, false, fmt.Errorf("pull async events: %w", nats.ErrNoResponders)
	}
	return nil, false, fmt.Errorf("pull async events: status %s %s", status, desc)
}

// finish waits until no request can deliver any more, passing each event
// that arrives meanwhile to handBack.
func (p *puller) finish(handBack func(*nats.Msg)) {
	for p.open != nil {
		select {
		case m := <-p.msgs:
			if ev, _, _ := p.receive(m); ev != nil {
				handBack(ev)
			}
		case <-p.open.timer.C:
			p.open = nil
		case <-p.closed:
			p.end() // nothing arrives any more
		}
	}
}

// close ends the subscription. Call it after finish.
func (p *puller) close() {
	close(p.quit)
	_ = p.sub.Unsubscribe()
}
