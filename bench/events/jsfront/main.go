// Command jsfront is a diagnostic floor of the events bench: the least an
// HTTP front of JetStream can do for an async invoke, as its own process
// like the Stratus server. It embeds nats-server with JetStream file
// storage in -store (events.OpenBus, as the server does), makes one plain
// stream, and answers every POST by publishing the body there, waiting
// for the acknowledgement, and answering 202 {"requestId": ...}. It
// prints "listening on http://ADDR" once ready and stops on SIGTERM.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-run/stratus/internal/events"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "jsfront:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 3 {
		return fmt.Errorf("usage: jsfront LISTEN STOREDIR")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bus, err := events.OpenBus(ctx, events.BusConfig{StoreDir: os.Args[2]})
	if err != nil {
		return err
	}
	defer bus.Close()
	js := bus.JetStream()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "FRONT", Subjects: []string{"front.>"}, Storage: jetstream.FileStorage, MaxBytes: 4 << 30,
	}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if _, err := js.Publish(r.Context(), "front.x", body); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"requestId":"` + uuid.NewString() + `"}`))
		}),
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
