package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

func TestPutVersionNumbersVersionsAndMovesHead(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	clk := newClock()
	s.now = clk.Now
	t1, t2, t3 := clk.t.Add(time.Second), clk.t.Add(2*time.Second), clk.t.Add(3*time.Second)

	cfg1 := testConfig(128)
	cfg2 := testConfig(512)
	cfg2.Env = map[string]string{"GREETING": "hi"}
	cfg2.IdleTimeout = stratus.Duration(90 * time.Second)

	f1, err := s.PutVersion(ctx, "hello", cfg1, "aaa", 100)
	if err != nil {
		t.Fatal(err)
	}
	want1 := &stratus.Function{Name: "hello", Version: 1, Config: cfg1, CodeSHA: "aaa", CodeSize: 100, CreatedAt: t1, UpdatedAt: t1}
	if diff := cmp.Diff(want1, f1); diff != "" {
		t.Errorf("first PutVersion (-want +got):\n%s", diff)
	}

	f2, err := s.PutVersion(ctx, "hello", cfg2, "bbb", 200)
	if err != nil {
		t.Fatal(err)
	}
	want2 := &stratus.Function{Name: "hello", Version: 2, Config: cfg2, CodeSHA: "bbb", CodeSize: 200, CreatedAt: t1, UpdatedAt: t2}
	if diff := cmp.Diff(want2, f2); diff != "" {
		t.Errorf("second PutVersion (-want +got):\n%s", diff)
	}
	got, err := s.GetFunction(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want2, got); diff != "" {
		t.Errorf("GetFunction (-want +got):\n%s", diff)
	}

	// Each function numbers its own versions.
	other, err := s.PutVersion(ctx, "other", cfg1, "aaa", 100)
	if err != nil {
		t.Fatal(err)
	}
	if other.Version != 1 || !other.CreatedAt.Equal(t3) {
		t.Errorf("first version of another function: version %d created %v, want 1 at %v", other.Version, other.CreatedAt, t3)
	}

	// Versions are immutable snapshots.
	for _, want := range []*stratus.Version{
		{Function: "hello", Version: 1, Config: cfg1, CodeSHA: "aaa", CodeSize: 100, CreatedAt: t1},
		{Function: "hello", Version: 2, Config: cfg2, CodeSHA: "bbb", CodeSize: 200, CreatedAt: t2},
		{Function: "other", Version: 1, Config: cfg1, CodeSHA: "aaa", CodeSize: 100, CreatedAt: t3},
	} {
		got, err := s.GetVersion(ctx, want.Function, want.Version)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetVersion(%s) (-want +got):\n%s", want.Key(), diff)
		}
	}
}

func TestPutVersionReturnsWhatReadsBack(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	cfg := testConfig(128)
	cfg.Env = map[string]string{} // stored as absent
	put, err := s.PutVersion(ctx, "f", cfg, "sha", 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetFunction(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(put, got); diff != "" {
		t.Errorf("GetFunction differs from PutVersion's result (-put +got):\n%s", diff)
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, err := s.PutVersion(ctx, "exists", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"GetFunction": func() error {
			_, err := s.GetFunction(ctx, "missing")
			return err
		},
		"GetVersion of a missing function": func() error {
			_, err := s.GetVersion(ctx, "missing", 1)
			return err
		},
		"GetVersion of a missing version": func() error {
			_, err := s.GetVersion(ctx, "exists", 2)
			return err
		},
		"DeleteFunction": func() error {
			return s.DeleteFunction(ctx, "missing")
		},
	} {
		err := call()
		if !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("%s: %v, want an error wrapping ErrNotFound", name, err)
		}
	}
	_, err := s.GetFunction(ctx, "missing")
	if want := `function "missing": not found`; err == nil || err.Error() != want {
		t.Errorf("GetFunction: %v, want %q", err, want)
	}
}

func TestDeleteFunctionCascades(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	start := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, fn := range []string{"gone", "kept"} {
		if _, err := s.PutVersion(ctx, fn, testConfig(128), fn+"-v1", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutVersion(ctx, fn, testConfig(128), fn+"-v2", 1); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertInvocations(ctx, []stratus.Invocation{invocation(fn, "r", start)}); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertLogs(ctx, []stratus.LogLine{logLine(fn, "r", start, "x")}); err != nil {
			t.Fatal(err)
		}
	}

	if err := s.DeleteFunction(ctx, "gone"); err != nil {
		t.Fatal(err)
	}

	if _, err := s.GetFunction(ctx, "gone"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("GetFunction after delete: %v, want ErrNotFound", err)
	}
	for v := 1; v <= 2; v++ {
		if _, err := s.GetVersion(ctx, "gone", v); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("GetVersion %d after delete: %v, want ErrNotFound", v, err)
		}
	}
	count := func(fn string) (inv, logs int) {
		t.Helper()
		is, err := s.ListInvocations(ctx, fn, InvocationQuery{})
		if err != nil {
			t.Fatal(err)
		}
		ls, err := s.ListLogs(ctx, fn, LogQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return len(is), len(ls)
	}
	if inv, logs := count("gone"); inv != 0 || logs != 0 {
		t.Errorf("deleted function keeps %d invocations and %d log lines", inv, logs)
	}
	if inv, logs := count("kept"); inv != 1 || logs != 1 {
		t.Errorf("other function has %d invocations and %d log lines, want 1 and 1", inv, logs)
	}
	code, err := s.CodeInUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]bool{"kept-v1": true, "kept-v2": true}, code); diff != "" {
		t.Errorf("CodeInUse after delete (-want +got):\n%s", diff)
	}
	if err := s.DeleteFunction(ctx, "gone"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second DeleteFunction: %v, want ErrNotFound", err)
	}

	// A function created again under the same name starts over.
	f, err := s.PutVersion(ctx, "gone", testConfig(128), "new", 1)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 1 {
		t.Errorf("recreated function's version = %d, want 1", f.Version)
	}
}

func TestCodeInUse(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	code, err := s.CodeInUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != 0 {
		t.Errorf("CodeInUse of an empty store = %v", code)
	}
	for _, p := range []struct{ fn, sha string }{{"a", "x"}, {"a", "y"}, {"b", "x"}, {"c", "z"}} {
		if _, err := s.PutVersion(ctx, p.fn, testConfig(128), p.sha, 1); err != nil {
			t.Fatal(err)
		}
	}
	code, err = s.CodeInUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]bool{"x": true, "y": true, "z": true}, code); diff != "" {
		t.Errorf("CodeInUse (-want +got):\n%s", diff)
	}
}

func TestListFunctionsThousand(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const n = 1000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("fn-%04d", i)
	}
	order := rand.Perm(n)
	for _, i := range order {
		if _, err := s.PutVersion(ctx, names[i], testConfig(128), fmt.Sprintf("sha-%d", i), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A second version for some, so the join must pick the head.
	for i := 0; i < n; i += 10 {
		if _, err := s.PutVersion(ctx, names[i], testConfig(256), fmt.Sprintf("sha2-%d", i), int64(i)); err != nil {
			t.Fatal(err)
		}
	}

	begin := time.Now()
	fs, err := s.ListFunctions(ctx)
	took := time.Since(begin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ListFunctions of %d functions took %v", n, took)
	if len(fs) != n {
		t.Fatalf("ListFunctions returned %d functions, want %d", len(fs), n)
	}
	for i, f := range fs {
		want := names[i]
		wantVersion, wantSHA, wantMem := 1, fmt.Sprintf("sha-%d", i), 128
		if i%10 == 0 {
			wantVersion, wantSHA, wantMem = 2, fmt.Sprintf("sha2-%d", i), 256
		}
		if f.Name != want || f.Version != wantVersion || f.CodeSHA != wantSHA || f.Config.MemoryMB != wantMem {
			t.Fatalf("ListFunctions()[%d] = %s v%d %s %d MB, want %s v%d %s %d MB",
				i, f.Name, f.Version, f.CodeSHA, f.Config.MemoryMB, want, wantVersion, wantSHA, wantMem)
		}
	}
	if took > 2*time.Second && !raceEnabled {
		t.Errorf("ListFunctions of %d functions took %v", n, took)
	}
}

func TestListFunctionsEmpty(t *testing.T) {
	s := openTest(t)
	fs, err := s.ListFunctions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if fs == nil || len(fs) != 0 {
		t.Errorf("ListFunctions of an empty store = %#v, want an empty slice", fs)
	}
}

func BenchmarkListFunctions(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	for i := range 1000 {
		if _, err := s.PutVersion(ctx, fmt.Sprintf("fn-%04d", i), testConfig(128), "sha", 1); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := s.ListFunctions(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
