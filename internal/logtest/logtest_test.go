package logtest_test

import (
	"log/slog"
	"testing"

	"github.com/stratus-run/stratus/internal/logtest"
)

func TestRecorderKeepsRecordsWithTheirAttrs(t *testing.T) {
	var h logtest.Recorder
	log := h.Logger()
	log.Debug("first", "n", 1)
	log.With("component", "pool").Error("second", "err", "boom")
	recs := h.Records()
	if len(recs) != 2 {
		t.Fatalf("kept %d records; want 2", len(recs))
	}
	if recs[0].Message != "first" || recs[0].Level != slog.LevelDebug || logtest.Attrs(recs[0])["n"] != "1" {
		t.Errorf("first record: %s %v %v", recs[0].Message, recs[0].Level, logtest.Attrs(recs[0]))
	}
	got := logtest.Attrs(recs[1])
	if recs[1].Message != "second" || got["component"] != "pool" || got["err"] != "boom" {
		t.Errorf("second record: %s %v", recs[1].Message, got)
	}
}
