package e2e

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/eventually"
)

// crashLedger is what the server acknowledged before a kill, to be found
// after the restart.
type crashLedger struct {
	mu sync.Mutex
	// published holds the ids of events answered 202.
	published map[string]bool
	// deployed is each function's last version answered 2xx.
	deployed map[string]v1.Function
	// images is each ref's last acknowledged state: its digest, or ""
	// once removed; busyRef is the ref of the import or remove in flight
	// at the kill (either outcome is right for it).
	images  map[string]string
	busyRef string
	// deploys and imageOps count the acknowledged ones.
	deploys, imageOps int
}

// crashLoad is the work a server does when it is killed: deploys of new
// versions, topic publishes and image imports and removes, each a
// sequence of its own, with tolerance for the kill's errors.
type crashLoad struct {
	c       *client.Client
	url     string
	token   string
	zips    [][]byte
	images  []string // docker save tarballs
	refs    []string // image refs, one per tarball
	fns     []string
	ledger  *crashLedger
	kill    int // the kill's number, for event ids
	seedFns uint64
	seedImg uint64
}

func (l *crashLoad) run(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { l.deploys(ctx) })
	wg.Go(func() { l.publishes(ctx) })
	wg.Go(func() { l.imageOps(ctx) })
}

func (l *crashLoad) deploys(ctx context.Context) {
	rng := rand.New(rand.NewPCG(l.seedFns, 1))
	for ctx.Err() == nil {
		fn := l.fns[rng.IntN(len(l.fns))]
		f, err := l.c.Deploy(ctx, fn, stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(l.zips[rng.IntN(len(l.zips))]))
		if err != nil {
			return // the server is gone
		}
		l.ledger.mu.Lock()
		l.ledger.deployed[fn] = *f
		l.ledger.deploys++
		l.ledger.mu.Unlock()
	}
}

func (l *crashLoad) publishes(ctx context.Context) {
	hc := &http.Client{}
	for n := 0; ctx.Err() == nil; n++ {
		id := fmt.Sprintf("k%d-%d", l.kill, n)
		body := tpCE(id, "crash.test", "e2e/crash", `{"n":`+strconv.Itoa(n)+`}`)
		req, err := http.NewRequestWithContext(ctx, "POST", l.url+"/v1/topics/crash/events", strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+l.token)
		req.Header.Set("Content-Type", ctStructured)
		resp, err := hc.Do(req)
		if err != nil {
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			l.ledger.mu.Lock()
			l.ledger.published[id] = true
			l.ledger.mu.Unlock()
		}
	}
}

func (l *crashLoad) imageOps(ctx context.Context) {
	rng := rand.New(rand.NewPCG(l.seedImg, 2))
	for ctx.Err() == nil {
		i := rng.IntN(len(l.images))
		ref := l.refs[i]
		l.ledger.mu.Lock()
		l.ledger.busyRef = ref
		present := l.ledger.images[ref] != ""
		l.ledger.mu.Unlock()
		var digest string
		var err error
		if present && rng.IntN(2) == 0 {
			err = l.c.RemoveImage(ctx, ref)
		} else {
			var img *v1.Image
			img, err = l.c.ImportImage(ctx, l.images[i], ref, nil)
			if err == nil {
				digest = img.Digest
			}
		}
		if err != nil {
			return
		}
		l.ledger.mu.Lock()
		l.ledger.images[ref] = digest
		l.ledger.busyRef = ""
		l.ledger.imageOps++
		l.ledger.mu.Unlock()
	}
}

// TestCrashConsistency kills the server (SIGKILL) at random moments while
// it deploys functions, takes topic publishes and imports and removes
// images, and restarts it on the same data dir each time. Every restart
// must find a consistent state: `stratus ls` and `stratus image ls` agree
// with the disk (each listed version's code and each listed image's
// layers exist, nothing else is left once the start has cleaned up), what
// was acknowledged before the kill is there, each function runs, and every
// event answered 202 is delivered. STRATUS_CRASH_SEED replays a run.
func TestCrashConsistency(t *testing.T) {
	const kills = 22
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("STRATUS_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("STRATUS_CRASH_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("seed %d (STRATUS_CRASH_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// The topic's subscriber: a URL that records the ids it receives.
	var subMu sync.Mutex
	delivered := map[string]bool{}
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.ID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		subMu.Lock()
		delivered[ev.ID] = true
		subMu.Unlock()
	}))
	defer sub.Close()

	// Code of four digests, and four images that share a base layer and
	// each have a layer of 2 MiB of their own (random, so it is written
	// as it is).
	var zips [][]byte
	for i := range 4 {
		zips = append(zips, zipDir(t, saltedCode(t, fmt.Sprint("crash ", i))))
	}
	base, err := layerOf([]layerFile{{Name: "bin/", Mode: 0o755}, {Name: "bin/app", Mode: 0o755, Body: []byte("#!/bin/sh\necho app\n")}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var images, refs []string
	for i := range 4 {
		body := make([]byte, 2<<20)
		crand.Read(body)
		top, err := layerOf([]layerFile{{Name: "data", Mode: 0o644, Body: body}})
		if err != nil {
			t.Fatal(err)
		}
		ref := fmt.Sprintf("example.com/crash:%d", i)
		refs = append(refs, ref)
		images = append(images, writeImage(t, dir, imageOf(t, ggcr.Config{Entrypoint: []string{"/bin/app"}}, base, top), ref))
	}

	s := startServer(t, "--keep-versions", "1")
	s.mustCLI("topic", "create", "crash")
	s.mustCLI("subscribe", "crash", "--url", sub.URL)
	fns := []string{"fa", "fb"}
	ledger := &crashLedger{published: map[string]bool{}, deployed: map[string]v1.Function{}, images: map[string]string{}}
	for _, fn := range fns {
		f := decode[v1.Function](t, []byte(s.mustCLI("deploy", fn, "--runtime", "provided", "-o", "json", saltedCode(t, "crash 0"))))
		ledger.deployed[fn] = f
	}

	began := time.Now()
	for k := range kills {
		load := &crashLoad{
			c: client.New(s.URL, s.Token), url: s.URL, token: s.Token,
			zips: zips, images: images, refs: refs, fns: fns, ledger: ledger, kill: k,
			seedFns: rng.Uint64(), seedImg: rng.Uint64(),
		}
		delay := time.Duration(50+rng.IntN(1200)) * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		load.run(ctx, &wg)
		time.Sleep(delay) // the random kill point, not a wait for a condition
		s.Kill()
		cancel()
		wg.Wait()
		ledger.mu.Lock()
		t.Logf("kill %d after %s: so far %d deploys, %d image imports and removes, %d events acknowledged; image op in flight on %q",
			k, delay, ledger.deploys, ledger.imageOps, len(ledger.published), ledger.busyRef)
		ledger.mu.Unlock()
		s.Restart()
		checkCrashState(t, s, ledger)
		if t.Failed() {
			t.Fatalf("inconsistent after kill %d (seed %d)\nserver log:\n%s", k, seed, s.Stderr())
		}
	}
	t.Logf("%d kills and restarts in %s", kills, time.Since(began).Round(time.Millisecond))

	// Every event answered 202 reaches the subscriber.
	ledger.mu.Lock()
	want := len(ledger.published)
	ledger.mu.Unlock()
	eventually.True(t, 60*time.Second, fmt.Sprintf("delivery of the %d accepted events", want), func() bool {
		subMu.Lock()
		defer subMu.Unlock()
		for id := range ledger.published {
			if !delivered[id] {
				return false
			}
		}
		return true
	})
}

// checkCrashState checks that what the restarted server lists agrees with
// its data dir and with what it acknowledged before the kill.
func checkCrashState(t *testing.T, s *server, l *crashLedger) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()

	fns := decode[[]v1.Function](t, []byte(s.mustCLI("ls", "-o", "json")))
	var wantCode []string
	for _, f := range fns {
		wantCode = append(wantCode, f.CodeSHA, f.CodeSHA+".zip")
		acked, ok := l.deployed[f.Name]
		switch {
		case !ok:
			t.Errorf("ls lists %s, which was never deployed", f.Name)
		case f.Version < acked.Version:
			t.Errorf("%s is at version %d after the restart; version %d was acknowledged", f.Name, f.Version, acked.Version)
		case f.Version == acked.Version && f.CodeSHA != acked.CodeSHA:
			t.Errorf("%s version %d has code %s, acknowledged with %s", f.Name, f.Version, f.CodeSHA, acked.CodeSHA)
		}
		for _, p := range []string{f.CodeSHA, f.CodeSHA + ".zip", f.CodeSHA + "/bootstrap"} {
			if _, err := os.Stat(filepath.Join(s.Data, "code", p)); err != nil {
				t.Errorf("%s version %d: its code is missing: %v", f.Name, f.Version, err)
			}
		}
	}
	if len(fns) != len(l.deployed) {
		t.Errorf("ls lists %d functions, want %d: %+v", len(fns), len(l.deployed), fns)
	}
	// With --keep-versions 1 each function has one version: the code
	// folder holds its code and nothing else.
	slices.Sort(wantCode)
	wantCode = slices.Compact(wantCode)
	if got := codeEntries(t, s.Data); !slices.Equal(got, wantCode) {
		t.Errorf("code on disk %v, want only the listed versions' %v", got, wantCode)
	}

	imgs := listImages(t, s)
	listed := map[string]string{}
	layers := map[string]bool{}
	for _, img := range imgs {
		listed[img.Ref] = img.Digest
		for _, d := range img.Layers {
			hex := strings.TrimPrefix(d, "sha256:")
			layers[hex] = true
			if fi, err := os.Stat(filepath.Join(s.Data, "images", "layers", hex)); err != nil || !fi.IsDir() {
				t.Errorf("image %s: layer %s is missing: %v", img.Ref, d, err)
			}
		}
	}
	for ref, digest := range l.images {
		if ref == l.busyRef {
			continue
		}
		if listed[ref] != digest {
			t.Errorf("image %s is %q after the restart; %q was acknowledged", ref, listed[ref], digest)
		}
	}
	for ref := range listed {
		if _, ok := l.images[ref]; !ok && ref != l.busyRef {
			t.Errorf("image ls lists %s, which was never imported", ref)
		}
	}
	// The operation in flight at the kill ended one way or the other: what
	// the restarted server lists is now what later restarts must keep.
	if l.busyRef != "" {
		l.images[l.busyRef] = listed[l.busyRef]
		l.busyRef = ""
	}
	ents, err := os.ReadDir(filepath.Join(s.Data, "images", "layers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !layers[e.Name()] {
			t.Errorf("layer %s is on disk, but no listed image has it", e.Name())
		}
	}
	digests := map[string]bool{}
	for _, img := range imgs {
		digests[strings.TrimPrefix(img.Digest, "sha256:")] = true
	}
	roots, _ := os.ReadDir(filepath.Join(s.Data, "images", "rootfs"))
	for _, e := range roots {
		if hex, _, _ := strings.Cut(e.Name(), "-"); !digests[hex] {
			t.Errorf("root %s is on disk, but no listed image has its digest", e.Name())
		}
	}
	// Staging and uploads are emptied at start.
	for _, d := range []string{"tmp", "uploads/images", "images/tmp"} {
		if ents, err := os.ReadDir(filepath.Join(s.Data, d)); err == nil && len(ents) > 0 {
			t.Errorf("%s holds %d entries after the start", d, len(ents))
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(s.Data, "images", ".index-*")); len(tmps) > 0 {
		t.Errorf("index temp files left: %v", tmps)
	}

	// Each function runs.
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Go(func() {
			c := s.tryInvoke(f.Name, `{}`)
			if c.Err != nil || c.Status != 200 || c.FunctionError() != "" {
				t.Errorf("invoke %s after the restart: %s", f.Name, c)
			}
		})
	}
	wg.Wait()
}
