package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
)

func TestOpenBusErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  BusConfig
	}{
		{"no store dir", BusConfig{}},
		{"bad listen", BusConfig{StoreDir: t.TempDir(), Listen: "nohostport"}},
		{"bad port", BusConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := OpenBus(t.Context(), tt.cfg)
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("open bus = %v, want ErrInvalid", err)
			}
			if b != nil {
				b.Close()
			}
		})
	}
}

func TestBusNoListenByDefault(t *testing.T) {
	b := openTestBus(t, BusConfig{StoreDir: t.TempDir()})
	defer b.Close()
	if u := b.ClientURL(); u != "" {
		t.Errorf("client URL %q, want none without Listen", u)
	}
	if _, err := b.JetStream().AccountInfo(t.Context()); err != nil {
		t.Errorf("jetstream over the in-process connection: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// TestPlainClientAsync publishes async events with a second, plain
// nats.go connection with every permission (as a client of an external
// NATS server may have; outside clients of the embedded server may not,
// see TestListenCredentials): to a function ensured beforehand, with a
// Nats-Msg-Id, and to one the queue has not seen, found by its rescan.
func TestPlainClientAsync(t *testing.T) {
	inv := &fakeInvoker{}
	pol := newPolicies("tcp", AsyncPolicy{}, "later", AsyncPolicy{})
	h := &harness{t: t, inv: inv, pol: pol, sink: &statusSink{}, done: make(chan doneRec, 10)}
	h.bus = openTestBus(t, BusConfig{StoreDir: t.TempDir()})
	h.q = h.newQueue(h.bus)
	t.Cleanup(h.close)
	if err := h.q.Ensure(t.Context(), "tcp"); err != nil {
		t.Fatal(err)
	}
	h.run()

	nc, err := nats.Connect("", nats.InProcessServer(h.bus.srv))
	if err != nil {
		t.Fatalf("connect in-process: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), AsyncSubject("tcp"), []byte(`{"via":"tcp"}`), jetstream.WithMsgID("client-id-1")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	d := h.waitDone(1, 10*time.Second)[0]
	if d.fn != "tcp" || d.id != "client-id-1" || d.event != `{"via":"tcp"}` || d.err != nil {
		t.Errorf("done = %+v, want tcp's event with request ID client-id-1", d)
	}

	// A core NATS publish (no JetStream ack, no ID) to a function no
	// consumer exists for yet.
	if err := nc.Publish(AsyncSubject("later"), []byte(`{"core":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	d = h.waitDone(1, 10*time.Second)[0]
	if d.fn != "later" || d.event != `{"core":true}` || d.id == "" || d.err != nil {
		t.Errorf("done = %+v, want later's event with a derived request ID", d)
	}
	if reqs := inv.requests(); len(reqs) != 2 || reqs[1].RequestID != d.id {
		t.Errorf("invocations %+v, want the derived ID %s passed to the invoker", reqs, d.id)
	}
}

var natsServer struct {
	once sync.Once
	path string
	err  error
}

// natsServerBinary builds the nats-server command once per test binary.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsServer.once.Do(func() {
		dir, err := os.MkdirTemp("", "stratus-nats-server-")
		if err != nil {
			natsServer.err = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "install", "github.com/nats-io/nats-server/v2@v2.15.2")
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServer.err = fmt.Errorf("go install nats-server: %v\n%s", err, out)
			return
		}
		natsServer.path = filepath.Join(dir, "nats-server")
	})
	if natsServer.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(natsServer.err)
		}
		t.Skip(natsServer.err)
	}
	return natsServer.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if natsServer.path != "" {
		os.RemoveAll(filepath.Dir(natsServer.path))
	}
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestExternalServer runs the queue against a separately started
// nats-server process through BusConfig.URL.
func TestExternalServer(t *testing.T) {
	bin := natsServerBinary(t)
	port := freePort(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("nats-server output:\n%s", out.String())
		}
	})

	inv := &fakeInvoker{}
	h := &harness{t: t, inv: inv, pol: newPolicies("ext", AsyncPolicy{MaxConcurrency: 4}), sink: &statusSink{}, done: make(chan doneRec, 100)}
	h.bus = openTestBus(t, BusConfig{URL: fmt.Sprintf("nats://127.0.0.1:%d", port)})
	if h.bus.srv != nil {
		t.Fatal("a server was embedded despite URL")
	}
	h.q = h.newQueue(h.bus)
	t.Cleanup(h.close)
	h.run()
	ids := make(map[string]bool)
	for i := range 20 {
		ids[h.enqueue("ext", fmt.Sprintf(`{"i":%d}`, i))] = true
	}
	for _, d := range h.waitDone(20, 15*time.Second) {
		if !ids[d.id] || d.err != nil {
			t.Errorf("done %+v, want success of an enqueued event", d)
		}
		delete(ids, d.id)
	}
	if len(ids) != 0 {
		t.Errorf("%d events not done", len(ids))
	}
	if u := h.bus.ClientURL(); u == "" {
		t.Error("no client URL for an external server")
	}
	// The figures come from the account and the stream list.
	if st := h.bus.Stats(); !st.Enabled || !st.Healthy || st.StoreReserved <= 0 {
		t.Errorf("bus stats of an external server = %+v, want enabled, healthy, with reserved store", st)
	} else if _, ok := st.Streams[AsyncStream]; !ok {
		t.Errorf("bus stats of an external server lack %s: %+v", AsyncStream, st.Streams)
	}
}

// TestOpenBusURLWaits checks OpenBus gives up within ctx when no server
// answers at URL.
func TestOpenBusURLWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := OpenBus(ctx, BusConfig{URL: fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))})
	if !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("open bus without a server = %v, want ErrUnavailable", err)
	}
}
