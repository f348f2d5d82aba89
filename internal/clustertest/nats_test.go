package clustertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-run/stratus/internal/eventually"
)

// TestNATSClusterKeepsStreamAcrossNodeKill starts three nodes, stores a
// message in a stream with three replicas, kills one node, stores and
// reads through the other two, and starts the node again.
func TestNATSClusterKeepsStreamAcrossNodeKill(t *testing.T) {
	c := StartNATSCluster(t, 3)
	if got := len(strings.Split(c.URL(), ",")); got != 3 {
		t.Fatalf("URL() = %q: want 3 URLs", c.URL())
	}
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// A JetStream API request is answered at most once: one sent while
	// the routes settle may be lost, so each attempt has its own bound.
	var s jetstream.Stream
	eventually.Nil(t, time.Minute, "a stream with 3 replicas", func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		s, err = js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
		return err
	})
	// The new stream's leader may not take publishes yet ("no response
	// from stream"): publish until one is stored. The message ID makes a
	// retry of a publish that was stored after all a duplicate the stream
	// drops.
	eventually.Nil(t, 30*time.Second, "a publish to the new stream", func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "t.a", []byte("one"), jetstream.WithMsgID("one"))
		return err
	})

	c.Kill(t, 0)
	// The stream's leader may have been n1: a new one is elected.
	eventually.Nil(t, 30*time.Second, "a publish with one node of three gone", func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "t.a", []byte("two"), jetstream.WithMsgID("two"))
		return err
	})
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2", info.State.Msgs)
	}

	c.Start(t, 0)
	// n1 alone holds the stream's copy again once it caught up.
	n1, err := nats.Connect(c.NodeURL(0))
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	js1, err := jetstream.New(n1)
	if err != nil {
		t.Fatal(err)
	}
	eventually.Nil(t, 30*time.Second, "the stream read through the restarted node", func() error {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js1.Stream(ictx, "T")
		return err
	})
}

func TestNATSClusterNodeIndex(t *testing.T) {
	c := &NATSCluster{nodes: []*natsNode{{name: "n1", client: 4222}}}
	if got, want := c.URL(), "nats://127.0.0.1:4222"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if c.Size() != 1 {
		t.Errorf("Size() = %d, want 1", c.Size())
	}
}
