package stratus

import (
	"crypto/rand"
	"encoding/hex"
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
	RequestID      string    `json:"requestId"`
	Function       string    `json:"function"`
	Version        int       `json:"version"`
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

// AsyncStatus is the state of one asynchronous invocation. Attempt is the
// attempt running or last made (0 while first queued).
type AsyncStatus struct {
	RequestID    string    `json:"requestId"`
	Function     string    `json:"function"`
	State        string    `json:"state"`
	Attempt      int       `json:"attempt"`
	EnqueuedAt   time.Time `json:"enqueuedAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	ErrorType    string    `json:"errorType,omitempty"`
	ErrorMessage string    `json:"errorMessage,omitempty"`
}

// Request is the input of one synchronous or asynchronous invocation, as
// the gateway, the event system and the API hand it to whatever runs it.
type Request struct {
	RequestID       string
	Event           []byte
	ClientContext   string // base64 JSON, Lambda's X-Amz-Client-Context
	CognitoIdentity string
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
// 48 bits of Unix milliseconds, then random bits), so IDs made later sort
// later and the store's indexes grow at their end. It panics only if the
// system's random source fails, as crypto/rand.Read does.
func NewRequestID() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	_, _ = rand.Read(b[6:])
	b[6] = b[6]&0x0f | 0x70 // version 7
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

// InstanceStats are a function's instance counts for status pages and
// metrics. Prepared instances (0 or 1) are not live.
type InstanceStats struct {
	Live, Idle, Busy int
	Prepared         int
}
