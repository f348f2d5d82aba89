package events

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// listenBus is an embedded bus with a TCP port, a real queue and real
// topics on it, as the server has them.
type listenBus struct {
	*harness
	creds string // the credentials file
	tp    *Topics
	stop  context.CancelFunc
	ended chan error
}

func openListenBus(t *testing.T, dir string) *listenBus {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol := newPolicies("sink", AsyncPolicy{}, "victim", AsyncPolicy{})
	h := &harness{t: t, dir: dir, inv: &fakeInvoker{}, pol: pol, sink: &statusSink{}, done: make(chan doneRec, 100)}
	lb := &listenBus{harness: h, creds: filepath.Join(dir, "nats-client.json")}
	h.bus = openTestBus(t, BusConfig{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0", ClientCreds: lb.creds})
	h.q = h.newQueue(h.bus)
	t.Cleanup(h.close)
	// The victim's stream and consumer exist: an event published to its
	// subject would run.
	if err := h.q.Ensure(t.Context(), "victim"); err != nil {
		t.Fatal(err)
	}
	h.run()
	lb.tp = NewTopics(TopicsConfig{
		Bus: h.bus, Store: st, Queue: h.q, FunctionExists: func(fn string) bool { return fn == "sink" }, Log: testLog(),
	})
	if err := lb.tp.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lb.stop, lb.ended = cancel, make(chan error, 1)
	go func() { lb.ended <- lb.tp.Run(ctx) }()
	t.Cleanup(lb.close) // before h.close: cleanups run last first
	return lb
}

// close stops the topics' Run, then the queue and the bus.
func (lb *listenBus) close() {
	if lb.stop != nil {
		lb.stop()
		if err := <-lb.ended; err != nil {
			lb.t.Errorf("topics run: %v", err)
		}
		lb.stop = nil
	}
	lb.harness.close()
}

// clientErrors connects to url with opts and returns the connection and
// the channel of its asynchronous errors (permission violations).
func clientErrors(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 100)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// wantViolation waits for the permissions violation of op ("Publish" or
// "Subscription") on subject.
func wantViolation(t *testing.T, errs chan error, op, subject string) {
	t.Helper()
	want := strings.ToLower(op + ` to "` + subject + `"`)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), want) {
				return
			}
			t.Logf("other client error: %v", err)
		case <-deadline:
			t.Errorf("no permissions violation for %s to %q within 5s", op, subject)
			return
		}
	}
}

func TestListenCredentials(t *testing.T) {
	dir := t.TempDir()
	lb := openListenBus(t, dir)
	url := lb.bus.ClientURL()

	creds, err := ReadClientCredentials(lb.creds)
	if err != nil {
		t.Fatal(err)
	}
	if creds.User != ClientUser || len(creds.Password) != 32 || creds.URL != url {
		t.Errorf("credentials %+v, want user %s, a 32-character password and URL %s", creds, ClientUser, url)
	}
	if fi, err := os.Stat(lb.creds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}

	// Without credentials, or with a wrong password: refused.
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo(ClientUser, "wrong")}, {nats.Token(creds.Password)}} {
		if nc, err := nats.Connect(url, opts...); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connect with %d options = %v, want an authorization violation", len(opts), err)
			if nc != nil {
				nc.Close()
			}
		}
	}

	// With them: a topic event goes through, acknowledged by JetStream
	// on the client's inbox, and reaches the topic's subscriber.
	if _, err := lb.tp.CreateTopic(t.Context(), "feed"); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.tp.Subscribe(t.Context(), stratus.Subscription{Topic: "feed", Function: "sink"}); err != nil {
		t.Fatal(err)
	}
	nc, errs := clientErrors(t, creds.URLWithAuth())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(t.Context(), TopicSubject("feed"), []byte(`{"specversion":"1.0","id":"t1","source":"/tcp","type":"x"}`))
	if err != nil {
		t.Fatalf("publish a topic event with JetStream: %v", err)
	}
	if ack.Stream != TopicStream {
		t.Errorf("acknowledged by stream %q, want %s", ack.Stream, TopicStream)
	}
	d := lb.waitDone(1, 10*time.Second)[0]
	if d.fn != "sink" || !strings.Contains(d.event, `"id":"t1"`) || d.err != nil {
		t.Errorf("done = %+v, want sink's invocation with the topic event", d)
	}

	// Everything else is refused: the async queue, other internal
	// subjects, JetStream's API, KV, the system account.
	for _, subj := range []string{
		AsyncSubject("victim"), "stratus.other", "stratus.topic.feed.deeper",
		"$JS.API.STREAM.PURGE." + TopicStream, "$KV.bucket.key", "$SYS.REQ.SERVER.PING", "_STRATUS_INBOX.x",
	} {
		if err := nc.Publish(subj, []byte(`{"evil":true}`)); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, "Publish", subj)
	}
	if _, err := nc.Request("$JS.API.INFO", nil, time.Second); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("request $JS.API.INFO = %v, want no answer", err)
	}
	wantViolation(t, errs, "Publish", "$JS.API.INFO")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	if _, err := js.AccountInfo(ctx); err == nil {
		t.Error("the client reached JetStream's account info")
	}
	cancel()
	wantViolation(t, errs, "Publish", "$JS.API.INFO")
	for _, subj := range []string{"stratus.>", AsyncSubject("victim"), TopicSubject("feed"), "_STRATUS_INBOX.>", "$JS.>", ">"} {
		if _, err := nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, "Subscription", subj)
	}

	// Nothing of that happened: no async event queued or run, the topic
	// stream still holds its one event. A marker enqueued for the victim
	// now is stored behind anything the client could have stored, so once
	// it is done and the victim's queue is empty, all before it has run.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	marker := lb.enqueue("victim", `{"marker":true}`)
	if d := lb.waitDone(1, 10*time.Second)[0]; d.id != marker {
		t.Errorf("done = %+v, want the marker %s first", d, marker)
	}
	eventually.True(t, 10*time.Second, "the victim's queue to be empty", func() bool {
		n, _, err := lb.q.Depth(t.Context(), "victim")
		return err == nil && n == 0
	})
	if reqs := lb.inv.requests(); len(reqs) != 2 {
		t.Errorf("%d invocations, want only the topic event's and the marker's", len(reqs))
	}
	s, err := lb.bus.JetStream().Stream(t.Context(), TopicStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Errorf("topic stream: %v, %+v; want its one event", err, info)
	}

	// A restart keeps the credentials, and puts right a loosened mode.
	nc.Close()
	lb.close()
	if err := os.Chmod(lb.creds, 0o644); err != nil {
		t.Fatal(err)
	}
	lb = openListenBus(t, dir)
	again, err := ReadClientCredentials(lb.creds)
	if err != nil {
		t.Fatal(err)
	}
	if again.User != creds.User || again.Password != creds.Password {
		t.Errorf("credentials after a restart %+v, want %+v", again, creds)
	}
	if fi, err := os.Stat(lb.creds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file after a restart: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	nc2, err := nats.Connect(lb.bus.ClientURL(), nats.UserInfo(creds.User, creds.Password))
	if err != nil {
		t.Fatalf("connect with the kept credentials after a restart: %v", err)
	}
	nc2.Close()
}

func TestListenCredentialsErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenBus(t.Context(), BusConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
	if !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("listen without a credentials file = %v, want ErrInvalid", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenBus(t.Context(), BusConfig{StoreDir: dir, Listen: "127.0.0.1:0", ClientCreds: bad})
	if !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("listen with a malformed credentials file = %v, want ErrInvalid", err)
	}
	if _, err := ReadClientCredentials(filepath.Join(dir, "none.json")); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("read a missing credentials file = %v, want ErrNotFound", err)
	}
}

func TestRedactURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:p@a:4222,nats://tok@b:4222", "nats://redacted@a:4222,nats://redacted@b:4222"},
		{"tls://u:p@h:4222, nats://h2:4222", "tls://redacted@h:4222,nats://h2:4222"},
		{"u:p@h:4222", "redacted@h:4222"},
	}
	for _, tt := range tests {
		if got := RedactURLs(tt.in); got != tt.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestExternalServerCredentials connects to a nats-server process that
// wants a user and password: with them in the URL, and without.
func TestExternalServerCredentials(t *testing.T) {
	bin := natsServerBinary(t)
	port := freePort(t)
	cmd := exec.Command(bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port), "--user", "u", "--pass", "good-pass")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	b := openTestBus(t, BusConfig{URL: fmt.Sprintf("nats://u:good-pass@127.0.0.1:%d", port)})
	if _, err := b.JetStream().AccountInfo(t.Context()); err != nil {
		t.Errorf("jetstream with the credentials: %v", err)
	}
	if u := b.ClientURL(); strings.Contains(u, "good-pass") || u == "" {
		t.Errorf("client URL %q, want one without the password", u)
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
	for _, url := range []string{fmt.Sprintf("nats://127.0.0.1:%d", port), fmt.Sprintf("nats://u:bad-pass@127.0.0.1:%d", port)} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		_, err := OpenBus(ctx, BusConfig{URL: url})
		cancel()
		if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Errorf("open bus with %s = %v, want ErrInvalid and an authorization violation", RedactURLs(url), err)
		}
		if err != nil && strings.Contains(err.Error(), "bad-pass") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
