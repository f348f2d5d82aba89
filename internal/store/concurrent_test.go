package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// TestConcurrentWritersAndReaders runs writers of every kind against
// readers and Prune; none may fail (no SQLITE_BUSY) and nothing written
// may be lost.
func TestConcurrentWritersAndReaders(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const (
		writers  = 4
		rounds   = 10
		batch    = 20
		versions = 5
	)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	stop := make(chan struct{})

	for w := range writers {
		fn := fmt.Sprintf("fn-%d", w)
		wg.Go(func() {
			for v := range versions {
				if _, err := s.PutVersion(ctx, fn, testConfig(128), fmt.Sprintf("%s-%d", fn, v), 1); err != nil {
					report(err)
					return
				}
			}
			for r := range rounds {
				recs := make([]stratus.Invocation, batch)
				lines := make([]stratus.LogLine, batch)
				for i := range batch {
					at := t0.Add(time.Duration(r*batch+i) * time.Millisecond)
					id := fmt.Sprintf("%d-%d", r, i)
					recs[i] = invocation(fn, id, at)
					lines[i] = logLine(fn, id, at, id)
				}
				if err := s.InsertInvocations(ctx, recs); err != nil {
					report(err)
					return
				}
				if err := s.InsertLogs(ctx, lines); err != nil {
					report(err)
					return
				}
			}
		})
	}

	var readers sync.WaitGroup
	for r := range 3 {
		readers.Go(func() {
			fn := fmt.Sprintf("fn-%d", r)
			var after int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.ListFunctions(ctx); err != nil {
					report(err)
					return
				}
				if _, err := s.ListInvocations(ctx, fn, InvocationQuery{}); err != nil {
					report(err)
					return
				}
				// Follow fn's logs: IDs only move forward.
				lines, err := s.ListLogs(ctx, fn, LogQuery{AfterID: after})
				if err != nil {
					report(err)
					return
				}
				for _, l := range lines {
					if l.ID <= after {
						report(fmt.Errorf("log ID %d after %d", l.ID, after))
						return
					}
					after = l.ID
				}
				if _, err := s.CodeInUse(ctx); err != nil {
					report(err)
					return
				}
			}
		})
	}
	readers.Go(func() { // a pruner that bounds nothing below what is written
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Prune(ctx, writers*rounds*batch, writers*rounds*batch, 0); err != nil {
				report(err)
				return
			}
		}
	})

	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	fs, err := s.ListFunctions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != writers {
		t.Errorf("%d functions, want %d", len(fs), writers)
	}
	for _, f := range fs {
		if f.Version != versions {
			t.Errorf("%s is at version %d, want %d", f.Name, f.Version, versions)
		}
		inv, err := s.ListInvocations(ctx, f.Name, InvocationQuery{Limit: MaxInvocationLimit})
		if err != nil {
			t.Fatal(err)
		}
		lines, err := s.ListLogs(ctx, f.Name, LogQuery{Limit: MaxLogLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(inv) != rounds*batch || len(lines) != rounds*batch {
			t.Errorf("%s has %d invocations and %d log lines, want %d of each", f.Name, len(inv), len(lines), rounds*batch)
		}
	}
}

// TestConcurrentStores opens the same file twice, as two processes would,
// and writes through both.
func TestConcurrentStores(t *testing.T) {
	ctx := context.Background()
	s1 := openTest(t)
	s2 := openAt(t, target(t, s1))
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, s := range []*Store{s1, s2} {
		wg.Go(func() {
			for j := range 50 {
				if _, err := s.PutVersion(ctx, "shared", testConfig(128), fmt.Sprint(i, j), 1); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	f, err := s1.GetFunction(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 100 {
		t.Errorf("version = %d, want 100", f.Version)
	}
}
