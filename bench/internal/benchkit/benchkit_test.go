package benchkit

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},     // ceil(0.5·4) = 2nd
		{ms(1, 2, 3, 4, 5), 0.5, 3 * time.Millisecond},  // ceil(2.5) = 3rd
		{ms(1, 2, 3, 4, 5), 0.99, 5 * time.Millisecond}, // the slowest
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.9, 9 * time.Millisecond},
	} {
		if got := Rank(tc.d, tc.p); got != tc.want {
			t.Errorf("Rank(%v, %v) = %v, want %v", tc.d, tc.p, got, tc.want)
		}
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd: %v", got)
	}
	if got := Median([]time.Duration{4, 1, 3, 2}); got != 2 { // (2+3)/2, integer
		t.Errorf("even: %v", got)
	}
	v := []float64{3, 1}
	if Median(v); v[0] != 3 {
		t.Error("Median sorted its argument")
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                          "0",
		460*time.Microsecond + 900: "460 µs",
		-460 * time.Microsecond:    "-460 µs",
		1234567:                    "1.23 ms",
		12 * time.Second:           "12s",
	} {
		if got := FmtDur(d); got != want {
			t.Errorf("FmtDur(%d) = %q, want %q", d, got, want)
		}
	}
	if got := Signed(5 * time.Microsecond); got != "+5 µs" {
		t.Errorf("Signed = %q", got)
	}
}

func TestParse(t *testing.T) {
	got, err := ParseInts(" 32,1,32 ", 1, 1024)
	if err != nil || len(got) != 2 || got[0] != 32 || got[1] != 1 {
		t.Errorf("ParseInts = %v, %v", got, err)
	}
	if _, err := ParseInts("0", 1, 1024); err == nil {
		t.Error("ParseInts took 0")
	}
	s, err := ParseSections("warm, relay,", "warm", "relay", "cold")
	if err != nil || !s["warm"] || !s["relay"] || s["cold"] {
		t.Errorf("ParseSections = %v, %v", s, err)
	}
	if _, err := ParseSections("warm,bogus", "warm"); err == nil {
		t.Error("ParseSections took an unknown section")
	}
}

// TestPostRaw drives an httptest server with the raw load generator and
// checks the request it sends.
func TestPostRaw(t *testing.T) {
	var (
		mu      sync.Mutex // the load generator's connections run at once
		gotHdr  http.Header
		gotBody string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if gotHdr == nil {
			gotHdr, gotBody = r.Header.Clone(), string(b)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	r := PostRaw(context.Background(), srv.URL+"/x", map[string]string{"Authorization": "Bearer t"}, []byte(`{"a":1}`),
		http.StatusAccepted, 2, 0, 100*time.Millisecond, os.Getpid())
	if r.OK == 0 || r.Failed != 0 || r.FirstErr != "" {
		t.Fatalf("PostRaw = %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotBody != `{"a":1}` || gotHdr.Get("Authorization") != "Bearer t" || gotHdr.Get("Content-Type") != "application/json" {
		t.Errorf("request: %q %v", gotBody, gotHdr)
	}
}

// TestMeasure drives an httptest server with the net/http load generator.
func TestMeasure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Stratus-Cold-Start", "true")
	}))
	defer srv.Close()
	called := false
	r, err := Measure(context.Background(), &Target{Name: "t", URL: srv.URL, Body: []byte(`{}`)}, 2, 20*time.Millisecond, 100*time.Millisecond,
		func() func(Run) { return func(r Run) { called = r.OK > 0 } })
	if err != nil || r.OK == 0 || r.Errs != 0 || r.Cold != r.OK || !called {
		t.Fatalf("Measure = %+v, %v (after called: %v)", r, err, called)
	}
	m := MedianRun([]Run{r, r, r})
	if m.OK != 3*r.OK || m.RPS != r.RPS {
		t.Errorf("MedianRun = %+v", m)
	}
}

// TestStartProcLine starts a child that names its address, copies its
// output to the log, and stops it.
func TestStartProcLine(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, rest, err := StartProcLine(ctx, []string{"sh", "-c", "echo first; echo listening on http://1.2.3.4:5 now; exec sleep 60"}, nil, "", log, "listening on http://")
	if err != nil {
		t.Fatal(err)
	}
	if rest != "1.2.3.4:5 now" {
		t.Errorf("rest = %q", rest)
	}
	if !p.Stop(5 * time.Second) {
		t.Error("the child did not end on SIGTERM")
	}
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), "first\n") {
		t.Errorf("log = %q", b)
	}
	if _, _, err := StartProcLine(ctx, []string{"true"}, nil, "", log, "never"); err == nil {
		t.Error("no error for a child that ended without the marker")
	}
}

// TestMeasureURLs checks that a target with URLs spreads its requests
// evenly over them, at one worker as at several, and that WaitOK waits
// for each of them.
func TestMeasureURLs(t *testing.T) {
	var mu sync.Mutex // the servers' handlers run at once
	count := map[string]int{}
	var urls []string
	for _, name := range []string{"a", "b", "c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			count[name]++
			mu.Unlock()
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	tgt := &Target{Name: "t", URLs: urls, Body: []byte(`{}`)}
	if err := WaitOK(context.Background(), tgt); err != nil {
		t.Fatal(err)
	}
	for _, conc := range []int{1, 4} {
		clear(count)
		r, err := Measure(context.Background(), tgt, conc, 0, 100*time.Millisecond, nil)
		if err != nil || r.OK == 0 || r.Errs != 0 {
			t.Fatalf("c=%d: Measure = %+v, %v", conc, r, err)
		}
		mu.Lock()
		for name, n := range count {
			// Each worker cycles through the URLs: they differ by at
			// most one request per worker.
			if d := n - r.OK/3; d < -conc || d > conc {
				t.Errorf("c=%d: %s got %d of %d requests", conc, name, n, r.OK)
			}
		}
		if len(count) != 3 {
			t.Errorf("c=%d: requests reached %v, want all three", conc, count)
		}
		mu.Unlock()
	}
}
