package stratus

import "time"

// Topic is a named stream of CloudEvents that subscriptions receive.
type Topic struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// Subscription delivers the events of a topic that pass its filter to one
// function (as async invocations) or one URL (as HTTP POSTs). Exactly one
// of Function and URL is set.
type Subscription struct {
	ID       string `json:"id"`
	Topic    string `json:"topic"`
	Function string `json:"function,omitempty"`
	URL      string `json:"url,omitempty"`
	// Filter is "" (every event), "type=EXACT" or "source-prefix=PREFIX".
	Filter string `json:"filter,omitempty"`
	// Batch is how many events one invocation of Function receives at
	// most, as a JSON list; 1 sends each event on its own (not in a list).
	Batch     int       `json:"batch"`
	CreatedAt time.Time `json:"createdAt"`
}

// MaxSubscriptionBatch is the largest Batch a subscription may ask for.
const MaxSubscriptionBatch = 1000
