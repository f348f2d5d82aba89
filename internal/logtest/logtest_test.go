package logtest_test

import (
	"log/slog"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

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

// TestRecorderAttrOrder: a record holds its logger's attributes first,
// then its own, as slog's handlers write them; so in Attrs a record's
// own attribute wins over its logger's of the same key.
func TestRecorderAttrOrder(t *testing.T) {
	var h logtest.Recorder
	h.Logger().With("component", "pool", "err", "from With").With("fn", "f").Error("failed", "err", "own", "n", 1)
	recs := h.Records()
	if len(recs) != 1 {
		t.Fatalf("kept %d records; want 1", len(recs))
	}
	var keys []string
	recs[0].Attrs(func(a slog.Attr) bool {
		keys = append(keys, a.Key+"="+a.Value.String())
		return true
	})
	want := []string{"component=pool", "err=from With", "fn=f", "err=own", "n=1"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
	if got := logtest.Attrs(recs[0])["err"]; got != "own" {
		t.Errorf("Attrs: err %q; want the record's own", got)
	}
}

// TestRecorderConcurrentUse logs from several goroutines, through the
// Recorder and through views made by With, while others read: run with
// -race. Every record is kept, each with its own attributes.
func TestRecorderConcurrentUse(t *testing.T) {
	const goroutines, each = 8, 200
	var h logtest.Recorder
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			log := h.Logger()
			if g%2 == 1 {
				log = log.With("view", g)
			}
			for i := range each {
				log.Info("line", "g", g, "i", i)
			}
		})
		wg.Go(func() {
			for range each / 10 {
				if recs := h.Records(); len(recs) > 0 {
					_ = logtest.Attrs(recs[len(recs)-1])
				}
			}
		})
	}
	wg.Wait()
	recs := h.Records()
	if len(recs) != goroutines*each {
		t.Fatalf("kept %d records; want %d", len(recs), goroutines*each)
	}
	next := make([]int, goroutines) // the next i of each goroutine
	for _, r := range recs {
		a := logtest.Attrs(r)
		g, _ := strconv.Atoi(a["g"])
		if a["i"] != strconv.Itoa(next[g]) {
			t.Fatalf("goroutine %d: record i=%s, want %d (records kept in each goroutine's order)", g, a["i"], next[g])
		}
		next[g]++
		if want := strconv.Itoa(g); g%2 == 1 && a["view"] != want || g%2 == 0 && a["view"] != "" {
			t.Fatalf("goroutine %d: view %q", g, a["view"])
		}
	}
}
