// Package events is Stratus's event system on NATS JetStream: the Bus (an
// embedded nats-server reached in-process, or an external server or
// cluster) and the Queue of durable asynchronous invocations (Lambda's
// Event invocation type). Topics and schedules build on the same Bus; the
// subpackages cloudevent and schedule hold their pure parts.
//
// # Queue: storage
//
// Every async event is one message in the stream STRATUS_ASYNC, subject
// stratus.async.<function>, file storage, work-queue retention: a message
// leaves the stream when it is acknowledged, so the stream holds exactly
// the events not yet done (queued, running, waiting for a retry) and its
// per-subject count is the queue depth. Nothing ages out on its own; an
// event older than its function's MaxEventAge is failed, not dropped. The
// stream is bounded (Queue.MaxBytes, discard new): a full stream makes
// Enqueue fail with stratus.ErrCapacity.
//
// Each function has one durable pull consumer, "async_<function>",
// filtered on its subject, explicit acks. The attempt count, the first
// enqueue time and the earliest next attempt travel in message headers:
// a failed attempt that may be retried is stored again with the count
// raised and the same request ID, and the original is acknowledged, so
// counts survive restarts. A throttled event is redelivered after a delay
// and an event handed back at shutdown is stored again unchanged; neither
// counts as an attempt.
//
// "Enqueue returned" means JetStream acknowledged the message: it was
// written to the stream's file before the acknowledgement (a crash or
// kill -9 of the process loses nothing), and fsynced on JetStream's sync
// interval (BusConfig.SyncAlways fsyncs every write instead).
//
// # Queue: goroutines, ordering, backpressure
//
// Run owns every goroutine the Queue starts: one worker per function with
// a consumer, started when the function is first ensured (Enqueue, Ensure)
// or found in the stream (at start and every RescanInterval); each worker
// owns one handler goroutine per event in flight, and each handler one
// heartbeat goroutine that extends the message's ack deadline while the
// invocation runs. Run returns after all of them have ended. When ctx
// ends, workers stop fetching, events fetched but not started are handed
// back, in-flight invocations get DrainTimeout to finish, then their
// contexts are cancelled and their events handed back; the next start
// takes them at once. After a crash, events that were in flight are
// delivered again once AckWait has passed; nothing acknowledged by
// Enqueue is lost either way.
//
// A worker fetches only as many messages as its function has free
// concurrency slots (AsyncPolicy.MaxConcurrency, read on every fetch), so
// at most that many of a function's events are in flight, and the rest
// wait in the stream, not in memory. A throttled invocation
// (stratus.ErrCapacity or ErrUnavailable from the Invoker) is handed back
// with a jittered ThrottleDelay, so a saturated function costs one
// attempt per event per delay, not a busy loop. Delivery is at least once
// and roughly in enqueue order per function; retries and throttled events
// go behind newer ones, and concurrency allows any completion order.
//
// One mutex (Queue.mu) guards the stream and consumer cache; it is never
// held across I/O.
package events
