package v1

import (
	"time"

	"github.com/stratus-run/stratus"
)

// TopicSpec is the body of POST /v1/topics.
type TopicSpec struct {
	Name string `json:"name"`
}

// Topic is a topic as the API shows it.
type Topic struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
	// Subscriptions counts the topic's subscriptions.
	Subscriptions int `json:"subscriptions"`
	// Pending counts the events stored on the topic that its
	// subscriptions have not yet delivered, summed over them (an event
	// two subscriptions wait for counts twice); see Subscription.Pending.
	// Absent when JetStream cannot be read, and in the answer of POST.
	Pending *int64 `json:"pending,omitempty"`
}

// TopicList answers GET /v1/topics.
type TopicList struct {
	Topics []Topic `json:"topics"`
}

// Published answers POST /v1/topics/NAME/events (202): the ids of the
// stored events, in the order given.
type Published struct {
	IDs []string `json:"ids"`
}

// SubscriptionSpec is the body of POST /v1/topics/NAME/subscriptions:
// exactly one of Function and URL; Filter "", "type=EXACT" or
// "source-prefix=PREFIX"; Batch 0 or 1 for one event per invocation, up
// to stratus.MaxSubscriptionBatch for a JSON list (functions only).
type SubscriptionSpec struct {
	Function string `json:"function,omitempty"`
	URL      string `json:"url,omitempty"`
	Filter   string `json:"filter,omitempty"`
	Batch    int    `json:"batch,omitempty"`
}

// Subscription is a subscription as GET /v1/subscriptions shows it: the
// stored subscription and what it has not yet delivered, as JetStream
// counts it for the subscription's consumer. Pending and OldestAgeSec are
// absent when JetStream cannot be read.
type Subscription struct {
	stratus.Subscription
	// Pending counts the topic's events stored since the subscription
	// was made that it has not yet handed to its function or URL:
	// waiting to be fetched, or fetched and being delivered (in a batch,
	// a URL's retries). Events its filter drops count until fetched.
	Pending *int64 `json:"pending,omitempty"`
	// OldestAgeSec is how long ago the oldest of them was stored, in
	// seconds; 0 when there is none.
	OldestAgeSec *float64 `json:"oldestAgeSec,omitempty"`
}

// SubscriptionList answers GET /v1/subscriptions and GET
// /v1/topics/NAME/subscriptions.
type SubscriptionList struct {
	Subscriptions []Subscription `json:"subscriptions"`
}

// Content types of POST /v1/topics/NAME/events besides binary mode (any
// other Content-Type, with ce-* headers).
const (
	ContentTypeCloudEvent      = "application/cloudevents+json"
	ContentTypeCloudEventBatch = "application/cloudevents-batch+json"
)
