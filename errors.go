// Package stratus holds the domain nouns of Stratus (functions, versions,
// invocations) and the error kinds every layer wraps. It imports only the
// standard library; every other package may import it.
package stratus

import "errors"

// Error kinds. Wrap them with context ("function %q: %w") and translate them
// once at each edge: the control API maps them to HTTP statuses, the CLI to
// exit codes.
var (
	ErrNotFound    = errors.New("not found")
	ErrInvalid     = errors.New("invalid")
	ErrConflict    = errors.New("conflict")
	ErrCapacity    = errors.New("too many requests")
	ErrTimeout     = errors.New("timed out")
	ErrUnavailable = errors.New("unavailable")
	ErrTooLarge    = errors.New("too large")
	// ErrNoSpace is a write refused because the data volume is full (or
	// over a configured bound of what Stratus keeps on it).
	ErrNoSpace = errors.New("no space left on the data volume")
	// ErrRequestTimeout is a request whose body did not arrive within
	// the server's read timeout: the client's fault, answered 408.
	ErrRequestTimeout = errors.New("request body not received in time")
	// ErrForbidden is a request whose caller is known but may not do
	// what it asks (a cookie-borne request from another origin).
	ErrForbidden = errors.New("forbidden")
	// ErrPrecondition is a change made against a state that is no
	// longer the current one (If-Match, RevisionId).
	ErrPrecondition = errors.New("precondition failed")
)
