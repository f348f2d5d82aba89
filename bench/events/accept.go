package main

import (
	"bytes"
	"context"
	"net/http"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// asyncHeader are the headers of an async invoke with the bench's token.
var asyncHeader = map[string]string{
	"Authorization":         "Bearer " + benchkit.Token,
	v1.HeaderInvocationType: v1.InvocationEvent,
}

// acceptRun has conc clients POST event as an async invoke (to
// url, the server's /v1/functions/NAME/invoke or jsfront), back to back,
// for warmup (unmeasured) and then d, and counts the 202s; the server is
// process pid. See benchkit.PostRaw.
func acceptRun(ctx context.Context, url string, pid int, event []byte, conc int, warmup, d time.Duration) benchkit.RawRun {
	return benchkit.PostRaw(ctx, url, asyncHeader, event, http.StatusAccepted, conc, warmup, d, pid)
}

// paddedEvent is a JSON object of exactly size bytes: fields, then a
// "pad" string filling the rest.
func paddedEvent(fields string, size int) []byte {
	head := `{` + fields + `,"pad":"`
	n := size - len(head) - len(`"}`)
	return []byte(head + string(bytes.Repeat([]byte("x"), max(n, 0))) + `"}`)
}
