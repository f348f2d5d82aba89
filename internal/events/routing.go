package events

import "github.com/stratus-run/stratus"

// Routing is what a DoneFunc did with a done event's outcome; the zero
// Routing says the outcome has no destination.
type Routing struct {
	// Destination is where the record was sent: "function:NAME" or
	// "topic:NAME" (the function's OnSuccess or OnFailure).
	Destination string
	// Failed says the destination could not be reached (or was not
	// valid): the record is lost.
	Failed bool
}

// States of the delivery of a done invocation's outcome to its
// destination (Status.DestinationState).
const (
	DestinationDelivered = stratus.AsyncDestinationDelivered
	DestinationFailed    = stratus.AsyncDestinationFailed
)

// reportRouting reports st, the final state of an invocation, again with
// where its outcome went, when it went somewhere: a state of its own,
// after the final one (the outcome is routed after it is reported), so
// that the destination shows once it is known.
func (q *Queue) reportRouting(st Status, r Routing) {
	if r.Destination == "" {
		return
	}
	st.Destination, st.DestinationState = r.Destination, DestinationDelivered
	if r.Failed {
		st.DestinationState = DestinationFailed
	}
	if now := q.now(); now.After(st.UpdatedAt) {
		st.UpdatedAt = now
	}
	q.report(st)
}
