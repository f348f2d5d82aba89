package store

import (
	"time"

	"github.com/stratus-run/stratus"
)

// invocation is a record of fn with every field set.
func invocation(fn, reqID string, start time.Time) stratus.Invocation {
	return stratus.Invocation{
		RequestID:      reqID,
		Function:       fn,
		Version:        2,
		Start:          start,
		DurationMs:     12.5,
		BilledMs:       13,
		MemoryMB:       256,
		MaxMemoryMB:    71,
		InitDurationMs: 150.25,
		Cold:           true,
		Outcome:        stratus.OutcomeError,
		ErrorType:      "Runtime.Unhandled",
		Instance:       "i-1",
		Trigger:        stratus.TriggerHTTP,
		CPUMs:          9.75,
		Arch:           stratus.ArchArm,
		TraceID:        "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

func logLine(fn, reqID string, t time.Time, text string) stratus.LogLine {
	return stratus.LogLine{Function: fn, Time: t, RequestID: reqID, Instance: "i-1", Stream: "stdout", Text: text}
}
