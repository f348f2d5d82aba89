package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// TailLogs answers a request's last lines, END and REPORT included, even
// when it logged more lines than ListLogs reads at once, and the last
// bytes of lines too long to read whole.
func TestTailLogs(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const n = MaxLogLimit + 2000
	var lines []stratus.LogLine
	for i := range n {
		lines = append(lines, logLine("f", "r1", t0, fmt.Sprintf("line %05d", i)))
		if i%100 == 0 {
			// Another request and another function in between.
			lines = append(lines, logLine("f", "r2", t0, "other"), logLine("g", "r1", t0, "other function"))
		}
	}
	report := logLine("f", "r1", t0, "REPORT RequestId: r1\tDuration: 1.00 ms")
	report.Stream = stratus.StreamReport
	lines = append(lines, report)
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}

	got, err := s.TailLogs(ctx, "f", "r1", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 3 {
		t.Fatalf("TailLogs: %d lines", len(got))
	}
	last := texts(got[len(got)-3:])
	if diff := cmp.Diff([]string{fmt.Sprintf("line %05d", n-1), "END RequestId: r1", report.Text}, last); diff != "" {
		t.Errorf("last lines (-want +got):\n%s", diff)
	}
	size := 0
	for _, l := range got {
		size += len(l.Text) + 1
	}
	if size < 4096 || size-len(got[0].Text)-1 >= 4096 {
		t.Errorf("TailLogs holds %d bytes in %d lines, want the fewest newest lines with 4096", size, len(got))
	}
	// The same lines as ListLogs reads, in the same order.
	want, err := s.ListLogs(ctx, "f", LogQuery{RequestID: "r1", AfterID: got[0].ID - 1, Limit: MaxLogLimit})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TailLogs differs from ListLogs of the same lines (-want +got):\n%s", diff)
	}

	// A request with little log: all of it; an unknown one: none.
	if got, err := s.TailLogs(ctx, "f", "r2", 4096); err != nil || len(got) != n/100 {
		t.Errorf("TailLogs of r2: %d lines, %v", len(got), err)
	}
	if got, err := s.TailLogs(ctx, "f", "nope", 4096); err != nil || got == nil || len(got) != 0 {
		t.Errorf("TailLogs of an unknown request: %v, %v", got, err)
	}
}

// Of lines longer than the bound, TailLogs reads only the last bytes, cut
// at a character's start.
func TestTailLogsLongLines(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	long := strings.Repeat("é", 128<<10) + "the end" // 256 KB and more
	var lines []stratus.LogLine
	for range 8 {
		lines = append(lines, logLine("f", "r1", t0, long))
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	for _, max := range []int{4096, 4097} {
		got, err := s.TailLogs(ctx, "f", "r1", max)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("TailLogs(%d): %d lines, want 1", max, len(got))
		}
		text := got[0].Text
		if len(text) > max || len(text) < max-3 || !strings.HasSuffix(long, text) || !utf8.ValidString(text) {
			t.Errorf("TailLogs(%d): %d bytes, valid UTF-8 %v, a suffix %v", max, len(text), utf8.ValidString(text), strings.HasSuffix(long, text))
		}
	}
}
