package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"github.com/stratus-run/stratus/internal/events"
)

// floor is an embedded nats-server with JetStream file storage in a temp
// dir, opened the way Stratus opens its own (events.OpenBus: in-process
// connection, default sync interval), with two streams: a plain one
// (limits retention) and one shaped like Stratus's async stream (work
// queue, duplicate window, discard new).
type floor struct {
	bus   *events.Bus
	js    jetstream.JetStream // with the async publish window
	plain jetstream.Stream
	shape jetstream.Stream
}

const (
	floorPlainStream = "FLOOR"
	floorShapeStream = "FLOOR_SHAPED"
)

func openFloor(ctx context.Context, dir string, window int) (*floor, error) {
	bus, err := events.OpenBus(ctx, events.BusConfig{StoreDir: dir})
	if err != nil {
		return nil, err
	}
	f := &floor{bus: bus}
	f.js, err = jetstream.New(bus.Conn(), jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		bus.Close()
		return nil, err
	}
	f.plain, err = f.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     floorPlainStream,
		Subjects: []string{"floor.>"},
		Storage:  jetstream.FileStorage,
		MaxBytes: 4 << 30,
	})
	if err == nil {
		f.shape, err = f.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:       floorShapeStream,
			Subjects:   []string{"shaped.*"},
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Discard:    jetstream.DiscardNew,
			MaxBytes:   4 << 30,
			MaxMsgSize: 260 << 10,
			Duplicates: 2 * time.Minute,
		})
	}
	if err != nil {
		bus.Close()
		return nil, fmt.Errorf("create floor streams: %w", err)
	}
	return f, nil
}

func (f *floor) close() { _ = f.bus.Close() }

// purge empties both streams between runs, so each run starts alike.
func (f *floor) purge(ctx context.Context) {
	_ = f.plain.Purge(ctx)
	_ = f.shape.Purge(ctx)
}

// Publish modes of syncRun.
const (
	modePlain  = "plain"  // js.Publish, waiting for the ack
	modeShaped = "shaped" // as Stratus's Enqueue: headers, Nats-Msg-Id, expected stream
	modeFuture = "future" // PublishAsync, then waiting for that message's ack
	modeMsgID  = "msgid"  // plain, with a Nats-Msg-Id
	modeHeader = "header" // plain, with the two headers of Enqueue
)

// floorResult is a floor run: acknowledged messages per second and this
// process's CPU (server and publishers) per message.
type floorResult struct {
	Rate  float64
	CPUus float64
}

// syncRun has conc publishers, each publishing payload and waiting for its
// acknowledgement before the next, for d.
func (f *floor) syncRun(ctx context.Context, conc int, d time.Duration, payload []byte, mode string) (floorResult, error) {
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	cpu0 := benchkit.ProcCPU(os.Getpid())
	for range conc {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				var err error
				switch mode {
				case modeShaped:
					id := uuid.NewString()
					msg := nats.NewMsg("shaped.fn")
					msg.Data = payload
					msg.Header.Set("Stratus-Request-Id", id)
					msg.Header.Set("Stratus-Enqueued-At", time.Now().UTC().Format(time.RFC3339Nano))
					_, err = f.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(floorShapeStream))
				case modeMsgID:
					_, err = f.js.Publish(ctx, "floor.x", payload, jetstream.WithMsgID(uuid.NewString()))
				case modeHeader:
					msg := nats.NewMsg("floor.x")
					msg.Data = payload
					msg.Header.Set("Stratus-Request-Id", uuid.NewString())
					msg.Header.Set("Stratus-Enqueued-At", time.Now().UTC().Format(time.RFC3339Nano))
					_, err = f.js.PublishMsg(ctx, msg)
				case modeFuture:
					var fut jetstream.PubAckFuture
					fut, err = f.js.PublishAsync("floor.x", payload)
					if err == nil {
						select {
						case <-fut.Ok():
						case err = <-fut.Err():
						case <-ctx.Done():
							err = ctx.Err()
						}
					}
				default:
					_, err = f.js.Publish(ctx, "floor.x", payload)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					if ctx.Err() != nil {
						return
					}
					continue
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	cpu := benchkit.ProcCPU(os.Getpid()) - cpu0
	if e, _ := firstErr.Load().(error); e != nil && acked.Load() == 0 {
		return floorResult{}, e
	}
	return floorResult{
		Rate:  float64(acked.Load()) / el.Seconds(),
		CPUus: float64(cpu.Microseconds()) / float64(max(acked.Load(), 1)),
	}, nil
}

// asyncRun publishes payload with PublishAsync from one goroutine for d,
// at most window unacknowledged, then waits for every acknowledgement. It
// returns acknowledged messages per second over the time until the last
// acknowledgement.
func (f *floor) asyncRun(ctx context.Context, d time.Duration, payload []byte) (floorResult, error) {
	var sent int64
	cpu0 := benchkit.ProcCPU(os.Getpid())
	var futs []jetstream.PubAckFuture
	start := time.Now()
	deadline := start.Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		fut, err := f.js.PublishAsync("floor.x", payload)
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			continue
		}
		if err != nil {
			return floorResult{}, fmt.Errorf("publish async: %w", err)
		}
		futs = append(futs, fut)
		sent++
	}
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return floorResult{}, fmt.Errorf("publish async: acknowledgements missing after 30s")
	}
	el := time.Since(start)
	var acked int64
	for _, fut := range futs {
		select {
		case <-fut.Ok():
			acked++
		case <-fut.Err():
		}
	}
	cpu := benchkit.ProcCPU(os.Getpid()) - cpu0
	return floorResult{Rate: float64(acked) / el.Seconds(), CPUus: float64(cpu.Microseconds()) / float64(max(acked, 1))}, nil
}
