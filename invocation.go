package stratus

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Outcomes of an invocation.
const (
	OutcomeSuccess = "success"
	OutcomeError   = "error"   // the function returned an error
	OutcomeTimeout = "timeout" // the function ran past its timeout
	OutcomeCrash   = "crash"   // the instance exited or failed to initialise
)

// Invocation is the record of one event handled by one instance.
type Invocation struct {
	RequestID string `json:"requestId"`
	Function  string `json:"function"`
	// Version is the snapshot that ran (Version.Version); Qualifier what
	// it ran as: LatestVersion or a published version's number (empty in
	// records stored before versions were published).
	Version        int       `json:"version"`
	Qualifier      string    `json:"qualifier,omitempty"`
	Start          time.Time `json:"start"`
	DurationMs     float64   `json:"durationMs"`
	BilledMs       int64     `json:"billedDurationMs"`
	MemoryMB       int       `json:"memorySizeMB"`
	MaxMemoryMB    int       `json:"maxMemoryUsedMB"`
	InitDurationMs float64   `json:"initDurationMs,omitempty"`
	Cold           bool      `json:"cold"`
	Outcome        string    `json:"outcome"`
	ErrorType      string    `json:"errorType,omitempty"`
	Instance       string    `json:"instance,omitempty"`
	// Trigger is what made the invocation: TriggerSync, TriggerHTTP,
	// TriggerAsync, TriggerTopic or TriggerSchedule (empty in records
	// stored before triggers were kept).
	Trigger string `json:"trigger,omitempty"`
	// CPUMs is the CPU time the instance used during the invocation
	// (user and system, from the sandbox's accounting), in milliseconds.
	CPUMs float64 `json:"cpuMs"`
	// Arch is the architecture the instance ran on (ArchX86 or ArchArm),
	// which decides the price column a record is costed with.
	Arch string `json:"architecture,omitempty"`
	// TraceID is the invocation's W3C trace ID (32 hex digits), when it
	// had a trace context.
	TraceID string `json:"traceId,omitempty"`
}

// What made an invocation.
const (
	TriggerSync     = "sync"     // POST /v1/functions/NAME/invoke, the CLI
	TriggerHTTP     = "http"     // the function's HTTP trigger, /fn/NAME
	TriggerAsync    = "async"    // an asynchronous invoke (InvocationType Event), or a destination
	TriggerTopic    = "topic"    // a topic subscription
	TriggerSchedule = "schedule" // a schedule's firing
)

// Architectures of the machine an instance or replica runs on.
const (
	ArchX86 = "x86_64"
	ArchArm = "arm64"
)

// ArchOf is the Arch of Go's GOARCH goarch: ArchX86 for amd64, ArchArm
// for arm64, else goarch itself.
func ArchOf(goarch string) string {
	switch goarch {
	case "amd64":
		return ArchX86
	case "arm64":
		return ArchArm
	}
	return goarch
}

// Kinds of workload.
const (
	KindFunction = "function"
	KindService  = "service"
)

// UsageMinute is one minute of one workload's metered use: the
// invocations (or requests) that started in the minute that begins at
// Minute, summed. Functions' minutes are made from their invocation
// records, services' from their requests and replicas. They are what
// usage and advice read over long windows: records are pruned sooner.
type UsageMinute struct {
	Kind        string    `json:"kind"` // KindFunction or KindService
	Name        string    `json:"name"`
	Minute      time.Time `json:"minute"`
	Requests    int64     `json:"requests"`
	Errors      int64     `json:"errors"` // function errors, timeouts, crashes; 5xx answers
	ColdStarts  int64     `json:"coldStarts"`
	DurationMs  float64   `json:"durationMs"` // summed
	MaxDuration float64   `json:"maxDurationMs"`
	BilledMs    float64   `json:"billedDurationMs"`
	InitMs      float64   `json:"initDurationMs"` // summed over cold starts
	CPUMs       float64   `json:"cpuMs"`
	GBSeconds   float64   `json:"gbSeconds"`   // memory allocated × time
	VCPUSeconds float64   `json:"vcpuSeconds"` // CPU allocated × time
	MaxInFlight int       `json:"maxInFlight"` // services
	Replicas    float64   `json:"replicas"`    // services: mean replicas over the minute
	MemoryMB    int       `json:"memorySizeMB"`
	VCPU        float64   `json:"vcpu"`
	Arch        string    `json:"architecture,omitempty"`
}

// Add adds o, a usage of the same minute of the same workload, to u:
// counts and times add up, maxima take the larger, and the allocation
// (memory, vCPU, arch) is o's, the later one, where o has one.
func (u *UsageMinute) Add(o UsageMinute) {
	u.Requests += o.Requests
	u.Errors += o.Errors
	u.ColdStarts += o.ColdStarts
	u.DurationMs += o.DurationMs
	u.MaxDuration = max(u.MaxDuration, o.MaxDuration)
	u.BilledMs += o.BilledMs
	u.InitMs += o.InitMs
	u.CPUMs += o.CPUMs
	u.GBSeconds += o.GBSeconds
	u.VCPUSeconds += o.VCPUSeconds
	u.MaxInFlight = max(u.MaxInFlight, o.MaxInFlight)
	u.Replicas += o.Replicas
	if o.MemoryMB != 0 {
		u.MemoryMB, u.VCPU = o.MemoryMB, o.VCPU
	}
	if o.Arch != "" {
		u.Arch = o.Arch
	}
}

// MBPerVCPU is the memory that comes with one vCPU: a function's CPU is
// in proportion to its memory, a whole vCPU at 1769 MB, as the runc
// sandbox shares it and as Lambda allocates it.
const MBPerVCPU = 1769

// MinuteOf is the usage of one invocation record, as it is added to its
// function's minute (the minute r started in, in UTC): one request, an
// error unless the outcome is success, a cold start if r was one, its
// durations and CPU time, GBSeconds = MemoryMB/1024 × BilledMs/1000 and
// VCPUSeconds = MemoryMB/1769 × (DurationMs+InitDurationMs)/1000. The
// meter costs single records with the same arithmetic, so that a window
// read from minutes and one read from records agree.
func MinuteOf(r Invocation) UsageMinute {
	vcpu := float64(r.MemoryMB) / MBPerVCPU
	u := UsageMinute{
		Kind:        KindFunction,
		Name:        r.Function,
		Requests:    1,
		DurationMs:  r.DurationMs,
		MaxDuration: r.DurationMs,
		BilledMs:    float64(r.BilledMs),
		InitMs:      r.InitDurationMs,
		CPUMs:       r.CPUMs,
		GBSeconds:   float64(r.MemoryMB) / 1024 * float64(r.BilledMs) / 1000,
		VCPUSeconds: vcpu * (r.DurationMs + r.InitDurationMs) / 1000,
		MemoryMB:    r.MemoryMB,
		VCPU:        vcpu,
		Arch:        r.Arch,
	}
	if !r.Start.IsZero() {
		u.Minute = r.Start.UTC().Truncate(time.Minute)
	}
	if r.Outcome != OutcomeSuccess {
		u.Errors = 1
	}
	if r.Cold {
		u.ColdStarts = 1
	}
	return u
}

// ReplicaUsage is what one replica of a service held and used over its
// life (or, while it runs, up to At): its allocation (CPU in vCPUs and
// memory) and the CPU time it used.
type ReplicaUsage struct {
	Service  string    `json:"service"`
	Revision int       `json:"revision"`
	Replica  string    `json:"replica"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	CPU      float64   `json:"vcpu"`
	MemoryMB int       `json:"memorySizeMB"`
	CPUMs    float64   `json:"cpuMs"`
	Requests int64     `json:"requests"`
	Arch     string    `json:"architecture,omitempty"`
}

// Streams of log lines. A stored StreamReport line holds a REPORT line and
// reads back as two platform lines: END, then REPORT.
const (
	StreamStdout   = "stdout"
	StreamStderr   = "stderr"
	StreamPlatform = "platform"
	StreamReport   = "report"
)

// LogLine is one line of an instance's output or a platform line
// (START, END, REPORT).
type LogLine struct {
	ID        int64     `json:"id"`
	Function  string    `json:"function"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"requestId,omitempty"`
	Instance  string    `json:"instance,omitempty"`
	Stream    string    `json:"stream"` // stdout, stderr or platform
	Text      string    `json:"text"`
}

// States of an asynchronous invocation.
const (
	AsyncQueued    = "queued"
	AsyncRunning   = "running"
	AsyncRetrying  = "retrying"
	AsyncSucceeded = "succeeded"
	AsyncFailed    = "failed"
)

// States of the delivery of a done asynchronous invocation's outcome to
// its on-success or on-failure destination (AsyncStatus.DestinationState).
const (
	AsyncDestinationDelivered = "delivered"
	AsyncDestinationFailed    = "failed"
)

// AsyncStatus is the state of one asynchronous invocation. Attempt is the
// attempt running or last made (0 while first queued). Once the invocation
// is done and its outcome was sent to a destination, Destination names it
// ("function:NAME[:QUALIFIER]" or "topic:NAME") and DestinationState says
// whether it got there; both are empty otherwise.
type AsyncStatus struct {
	RequestID        string    `json:"requestId"`
	Function         string    `json:"function"`
	State            string    `json:"state"`
	Attempt          int       `json:"attempt"`
	EnqueuedAt       time.Time `json:"enqueuedAt"`
	UpdatedAt        time.Time `json:"updatedAt"`
	ErrorType        string    `json:"errorType,omitempty"`
	ErrorMessage     string    `json:"errorMessage,omitempty"`
	Destination      string    `json:"destination,omitempty"`
	DestinationState string    `json:"destinationState,omitempty"`
}

// Request is the input of one synchronous or asynchronous invocation, as
// the gateway, the event system and the API hand it to whatever runs it.
type Request struct {
	RequestID       string
	Event           []byte
	ClientContext   string // base64 JSON, Lambda's X-Amz-Client-Context
	CognitoIdentity string
	// Trigger is what made the invocation (TriggerSync, ...); empty is
	// TriggerSync. The trace context travels in the ctx of the call.
	Trigger string
}

// Response is the outcome of one invocation. Function errors, timeouts
// and crashes are outcomes, not Go errors: ErrorType is set and Body holds
// Lambda's error object.
type Response struct {
	Body      []byte
	ErrorType string
	Record    Invocation
}

// NewRequestID returns a new request ID: a UUID of version 7 (RFC 9562:
// 48 bits of Unix milliseconds, a 12-bit counter, then 62 random bits),
// so IDs made later sort later, within a millisecond too, and the store's
// indexes grow at their end. The counter is RFC 9562's method 1 (see
// idClock); an ID's time may run a few milliseconds ahead of the clock
// after more than 2,048 IDs in one millisecond, or stay at the last ID's
// while the clock goes back. It is safe for concurrent use and panics
// only if the system's random source fails, as crypto/rand.Read does.
func NewRequestID() string { return requestIDs.newID(time.Now().UnixMilli()) }

// newID returns a new request ID made at now (Unix milliseconds) that
// sorts after every ID c has made.
func (c *idClock) newID(now int64) string {
	var b [16]byte
	_, _ = rand.Read(b[6:])
	ms, seq := c.next(now, uint16(b[6])<<8|uint16(b[7]))
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = 0x70 | byte(seq>>8) // version 7, then the counter's top 4 bits
	b[7] = byte(seq)
	b[8] = b[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// requestIDs orders the IDs NewRequestID makes.
var requestIDs idClock

// idClock is the time and counter of the last request ID made, so that
// the next one sorts after it (RFC 9562, section 6.2, method 1: a
// counter in rand_a).
type idClock struct {
	mu  sync.Mutex
	ms  int64  // Unix milliseconds of the last ID
	seq uint16 // its counter, 12 bits
}

// next returns the time and counter of an ID made at now (Unix
// milliseconds), after every ID c has given: at a millisecond later than
// the last ID's, the counter starts at seed's low 11 bits (random, in the
// lower half, so that it has room to count); at the same or an earlier
// one, the ID takes the last one's millisecond and the counter goes up by
// one; past 0xfff, the millisecond goes up by one and the counter starts
// again from seed.
func (c *idClock) next(now int64, seed uint16) (ms int64, seq uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case now > c.ms:
		c.ms, c.seq = now, seed&0x7ff
	case c.seq < 0xfff:
		c.seq++
	default:
		c.ms, c.seq = c.ms+1, seed&0x7ff
	}
	return c.ms, c.seq
}

// InstanceStats are a function's instance counts for status pages and
// metrics. Prepared instances (0 or 1) are not live.
type InstanceStats struct {
	Live, Idle, Busy int
	Prepared         int
	Starting         int // instances being made for a cold start
	Waiting          int // invocations waiting for an instance
	// Counters since the server started.
	Throttles     int64 // invocations refused for want of an instance (429)
	ColdStarts    int64 // invocations that started an instance
	PrepareHits   int64 // cold starts that found a prepared sandbox
	PrepareMisses int64 // cold starts that had to make one
}
