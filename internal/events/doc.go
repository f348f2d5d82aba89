// Package events is Stratus's event system on NATS JetStream: the Bus (an
// embedded nats-server reached in-process, or an external server or
// cluster) and the Queue of durable asynchronous invocations (Lambda's
// Event invocation type). Topics and schedules build on the same Bus; the
// subpackages cloudevent and schedule hold their pure parts.
//
// # Bus: health and recovery
//
// Bus.Run owns one goroutine (the loop itself): every
// BusConfig.HealthInterval, and at once when the embedded server logs a
// write error, it checks whether JetStream can store (enabled, no stream
// broken by a write error) and whether the data volume has
// BusConfig.MinFree free, and keeps Health current (stratus.ErrNoSpace for
// a full volume, ErrUnavailable else). nats-server keeps a stream's first
// write error (its "Critical write error", a full disk) and stops storing
// on it, answering no publish; it may also disable JetStream. So while the
// bus is unhealthy every publish fails at once with Health's error, a
// publish already waiting fails as soon as the bus turns unhealthy, and
// none waits more than PublishTimeout. Once the volume has room again Run
// re-enables JetStream (shut down and enabled again: streams and consumers
// are recovered from their files, without the error), with a backoff, and
// closes the channel of Restarted: the Queue and Topics make sure their
// stream and consumers exist and make their pull requests again. JetStream
// API requests of Queue and Topics hold Bus.apiMu for reading (nats-server
// replaces its API queues unguarded while it enables JetStream) and are not
// made while the bus is unhealthy. The embedded server's store is sized
// from the volume (BusConfig.MaxStore) and the streams from it
// (Bus.StreamBytes), so that a small disk gets small streams rather than no
// server.
//
// # Queue: storage
//
// Every async event is one message in the stream STRATUS_ASYNC, subject
// stratus.async.<function>, file storage, work-queue retention: a message
// leaves the stream when it is acknowledged, so the stream holds exactly
// the events not yet done (queued, running, waiting for a retry) and its
// per-subject count is the queue depth. Nothing ages out on its own; an
// event older than its function's MaxEventAge is failed, not dropped. The
// stream is bounded (QueueConfig.MaxBytes, discard new): a full stream
// makes Enqueue fail with stratus.ErrCapacity. The hooks and durations
// named below (BeforeAck, ThrottleDelay, AckWait, ...) are QueueConfig's
// fields.
//
// Each function has one durable pull consumer, "async_<function>",
// filtered on its subject, explicit acks. The attempt count, the first
// enqueue time, the earliest next attempt, the trigger (what made the
// invocation: an async invoke or a destination, a topic, a schedule;
// async when absent) and the producer's W3C trace context travel in
// message headers:
// a failed attempt that may be retried is stored again with the count
// raised and the same request ID, and the original is acknowledged, so
// counts survive restarts. A throttled event is redelivered after a delay
// and an event handed back at shutdown is stored again unchanged; neither
// counts as an attempt.
//
// Workers make no pull request while the bus is unhealthy: events wait in
// the stream while what they would write could not be kept. BeforeAck
// stores an attempt's record and status before its event is acknowledged
// or replaced by its retry; if that fails the event is not acknowledged
// but delivered again after about twice ThrottleDelay, and its attempt
// runs again (at least once, never lost).
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
// or found in the stream (at start and every RescanInterval), and ended,
// its consumer deleted, once its function is gone and nothing of it is
// left in the stream; each worker
// owns one handler goroutine per event in flight, and each handler one
// heartbeat goroutine that extends the message's ack deadline while the
// invocation runs. Each worker also owns an acker goroutine that settles
// its done events in batches (at most one per 5 ms): one BeforeAck for
// all the events done since the last batch, then their acknowledgements
// and one flush, so that an event is still acknowledged only after its
// trace is stored. Run returns after all of them have ended.
//
// A worker pulls its function's events with one pull request at a time,
// on a subscription of its own that it keeps until JetStream has ended the
// request (with its last message, or a status at its expiry, PollWait
// after it was made): JetStream counts a message sent to a reply subject
// nobody listens on as delivered, and it would come back only after
// AckWait, after a restart too, so a worker never abandons a request.
// When ctx ends, workers make no new requests and hand back the events
// their last one still brings, in-flight invocations get DrainTimeout to
// finish, then their contexts are cancelled and their events handed back.
// Run returns once JetStream has acknowledged every hand-back (close the
// Bus only then); the next start takes those events at once. After a
// crash, events that were in flight are delivered again once AckWait has
// passed; nothing acknowledged by Enqueue is lost either way.
//
// A worker asks for only as many messages as its function has free
// concurrency slots (AsyncPolicy.MaxConcurrency, read on every request), so
// at most that many of a function's events are in flight, and the rest
// wait in the stream, not in memory. A throttled invocation
// (stratus.ErrCapacity or ErrUnavailable from the Invoker) is handed back
// with a jittered ThrottleDelay, so a saturated function costs one
// attempt per event per delay, not a busy loop. Delivery is at least once
// and roughly in enqueue order per function; retries and throttled events
// go behind newer ones, and concurrency allows any completion order.
//
// One mutex (Queue.mu) guards the stream and consumer cache; it is never
// held across I/O. A stream is created or updated only on the Bus's stream
// turn (a one-slot channel held across that request, and taken before
// Queue.mu or Topics.mu, which are held only briefly inside it), so that
// no stream is updated while a consumer of it is created (nats-server
// reads the stream's store configuration unlocked then).
//
// # Traces and figures
//
// Enqueue, Topics.Publish and each firing of a schedule inject their
// ctx's trace context into the message headers (with a producer span
// "enqueue <function>", "publish <topic>" when ctx is in a trace; a
// schedule's firing starts a trace of its own). Each attempt runs in a
// consumer span "async <function>", a child of the producer's, whose ctx
// the Invoker receives; a topic subscription's enqueue and URL POST carry
// the publisher's context on. The Queue counts retries, events that
// failed for good and what their destinations did; Queue.Stats and
// Bus.Stats read JetStream at most once a second, so a metrics scrape
// costs no request per function. Once a done event's outcome went to its
// destination, the Queue reports its final state again with the
// destination and whether it got there (Status.Destination). For the
// API, Queue.Depths reads every function's queue in one request (plus one
// per function with events, for its oldest), and Topics.SubscriptionDepths
// what each subscription has not yet delivered from its consumer's info
// (one request per 256 consumers, plus one per subscription with pending
// events: the topic's first event after the consumer's ack floor).
//
// # Scheduler
//
// The schedules live in the store; the Scheduler's Run owns one goroutine
// that keeps each schedule's next firing, sleeps until the earliest (a
// timer; Create, Delete and Reload wake it through a 1-buffered channel,
// so they never block; it reads the store again every ReloadInterval) and
// enqueues each due firing on the Queue, one at a time,
// in order of scheduled time. It holds no lock: only Run's goroutine
// touches its state. Missed firings collapse into one catch-up firing
// (see Scheduler).
//
// # Several servers
//
// Several Stratus servers share one event system by connecting their
// Buses to one NATS cluster (BusConfig.URL) and reading one store
// (PostgreSQL); nothing of it is kept per server but what is in flight.
// What they share, and what each guarantee is:
//
//   - Streams. STRATUS_ASYNC and STRATUS_TOPICS are made (or updated to
//     the same configuration) by every server, with BusConfig.Replicas
//     copies: by default min(3, the servers of the NATS cluster as the
//     connected server reports them), so that with three NATS nodes or
//     more a stream survives one node's loss (JetStream acknowledges a
//     publish once a majority of its replicas stored it). Servers that
//     start together race to make them: a create that fails or goes
//     unanswered is tried again and then updates what is there.
//   - Async events. Every server makes the same durable pull consumer
//     per function, "async_<function>", with the same configuration, and
//     pulls from it: one work queue, each event delivered to one server
//     at a time, held there while its invocation runs (heartbeats every
//     AckWait/3), acknowledged once done. A server that dies mid-event
//     (its connection gone, nothing acknowledged) leaves the event to
//     another, which gets it once AckWait has passed. A server finds the
//     consumers other servers made by its rescan (RescanInterval). Each
//     server caps its own pulls at a function's MaxConcurrency; the
//     global limit is the Invoker's (the function's owner throttles,
//     and a throttled event waits ThrottleDelay). A function another
//     server deployed and this one does not know yet is not taken as
//     gone while the shared store has it (QueueConfig.Exists): its
//     events wait and its consumer stays.
//   - Topics. Subscriptions are rows in the store; each server follows
//     all of them (Topics.Reload on a change notification, and every
//     TopicsConfig.ReloadInterval), and the servers share each one's
//     durable consumer, so each event is delivered by one server.
//   - Schedules. Every server fires every schedule; a firing's request
//     ID and event id are derived from the schedule's name, its creation
//     time and the firing time, and it is enqueued with that ID as its
//     Nats-Msg-Id, so JetStream stores one event of the twins made within
//     its two-minute duplicate window. A server reads the last firing
//     recorded in the store before each firing and at each reload
//     (Scheduler.Reload, and every SchedulerConfig.ReloadInterval), so a
//     server late by more than the window does not fire a recorded tick
//     again (see Scheduler).
//   - When a NATS node dies, the streams and consumers it led elect new
//     leaders among the others (nats-server's Raft election, several
//     seconds); meanwhile publishes fail with stratus.ErrUnavailable (an
//     Enqueue whose publish the dead leader took fails after
//     PublishTimeout; the event may have been stored all the same), and
//     every event already accepted stays, and runs.
//
// # Topics: storage
//
// Every topic event is one message in the stream TopicStream
// (STRATUS_TOPICS), subject stratus.topic.<topic>, file storage, limits
// retention: an event stays until it is older than TopicsConfig.MaxAge (24
// h) or the stream is over TopicsConfig.MaxBytes (1 GiB, less on a small
// disk), then the oldest go (discard old), whether or not every subscriber
// has received them, so topics cannot fill the disk and a subscriber that
// falls that far behind loses the oldest events. The API and destinations
// publish each event as its structured-mode JSON with a Nats-Msg-Id hashed
// from topic, source and id (the same event published twice within two
// minutes is stored once); Publish returns once JetStream acknowledged
// every event, with the same durability as Enqueue. Any NATS client may
// publish structured JSON to the subject too (through BusConfig.Listen,
// only with the credentials kept in BusConfig.ClientCreds, and nowhere
// else: see clientPermissions); the stream takes it even before the topic
// exists, but only subscriptions receive events, and a subscription
// receives the events stored after its creation. Topics and subscriptions
// themselves are rows in the store.
//
// Each subscription is one durable pull consumer named by its ID,
// filtered on its topic's subject, starting at its creation time,
// explicit acks. A message is parsed (an invalid CloudEvent is dropped
// with a log line and counted), filtered, and then, for a function,
// enqueued as an async invocation (the event's JSON, or a JSON list of up
// to Batch events collected within BatchWait and kept under the async
// event size limit) and acknowledged only after Enqueue returned; an
// Enqueue that fails for good (function gone, event too large) drops the
// events with a log line, any other failure delivers them again after a
// backoff. For a URL, each event is POSTed in structured mode and
// acknowledged on a 2xx answer; failures are delivered again after a
// backoff (nak with delay) up to URLAttempts attempts, a 4xx other than
// 408 and 429 at once, then the event is dropped with a log line.
// Delivery is at least once: a crash between Enqueue (or a POST) and the
// acknowledgement delivers the event again after AckWait.
//
// # Topics: goroutines and locks
//
// Topics.Run owns one goroutine per subscription, started for every
// stored subscription at start and for each new one (Subscribe wakes Run
// through a 1-buffered channel; Reload, and a ticker every
// ReloadInterval, have it read the stored ones again), and cancelled
// when the subscription or
// its topic is deleted; it then deletes its consumer (Run also deletes
// consumers of subscriptions deleted while it was stopped). A function
// subscription's goroutine enqueues one invocation at a time; a URL
// subscription's goroutine owns up to URLConcurrency POST goroutines.
// Events fetched but not settled when Run stops are delivered again after
// AckWait. Run returns after every goroutine has ended.
//
// Topics has two mutexes: changeMu orders a store change of subscriptions
// with the update of the in-memory set Run follows, and mu guards that set
// and the stream; changeMu is taken before mu, and mu is never held across
// I/O.
package events
