package v1

import (
	"encoding/json"
	"time"
)

// ScheduleSpec is the body of POST /v1/schedules. Exactly one of Cron
// (the six fields of an EventBridge cron expression, "0 12 * * ? *"),
// Rate ("5 minutes") and At ("2026-12-01T10:00:00", wall clock in
// Timezone) is set. Data, a JSON object, becomes each event's detail.
type ScheduleSpec struct {
	Name     string          `json:"name"`
	Function string          `json:"function"`
	Cron     string          `json:"cron,omitempty"`
	Rate     string          `json:"rate,omitempty"`
	At       string          `json:"at,omitempty"`
	Timezone string          `json:"timezone,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Schedule is a schedule as the API shows it.
type Schedule struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	// Expression is canonical: cron(...), rate(...) or at(...).
	Expression string          `json:"expression"`
	Timezone   string          `json:"timezone,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	CreatedAt  time.Time       `json:"createdAt"`
	// LastFiredAt is the scheduled time of the last firing; absent before
	// the first.
	LastFiredAt *time.Time `json:"lastFiredAt,omitempty"`
	// NextFiringAt is the scheduled time of the next firing; absent when
	// there is none (an at schedule that fired).
	NextFiringAt *time.Time `json:"nextFiringAt,omitempty"`
}

// ScheduleList answers GET /v1/schedules.
type ScheduleList struct {
	Schedules []Schedule `json:"schedules"`
}
