package stratus

import (
	"encoding/json"
	"time"
)

// Schedule is a named clock that invokes a function: each firing is an
// asynchronous invocation of Function with an EventBridge Scheduled Event.
type Schedule struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	// Expression is the canonical cron(...), rate(...) or at(...)
	// expression.
	Expression string `json:"expression"`
	// Timezone is the IANA time zone of cron and at expressions, "" for
	// UTC.
	Timezone string `json:"timezone,omitempty"`
	// Data is the JSON object sent as each event's detail; nil for {}.
	Data json.RawMessage `json:"data,omitempty"`
	// CreatedAt anchors rate expressions: they fire at CreatedAt,
	// CreatedAt+interval, ...
	CreatedAt time.Time `json:"createdAt"`
	// LastFiredAt is the scheduled time of the last firing made (or given
	// up on); the zero time before the first.
	LastFiredAt time.Time `json:"lastFiredAt"`
}
