package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
)

// noSpace is what every answer refused for want of space says.
const noSpace = "no space left on the data volume"

// callTimeout bounds every call of the disk-full tests: a call that takes
// longer hangs, which is a failure.
const callTimeout = 20 * time.Second

// tmpfsVolume mounts a tmpfs of size (e.g. "300m") on a new folder and
// unmounts it at the end of the test (after the server, started later,
// has stopped). It needs root: without it the test is skipped, except in
// CI, where it fails.
func tmpfsVolume(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the disk-full tests mount a tmpfs, which needs root")
		}
		t.Skip("the disk-full tests mount a tmpfs, which needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillVolume appends to path until its volume is full, then gives back
// leave bytes (truncating the file), and returns the file's size. The
// server frees space as it goes (events done leave the stream, SQLite
// reuses its WAL), so tests top the volume up before each refused call.
func fillVolume(t *testing.T, path string, leave int64) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("fill volume: %v", err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := max(fi.Size()-leave, 0)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return size
}

// boundedClient has every call of the test end within callTimeout.
var boundedClient = &http.Client{Timeout: callTimeout}

// callBounded sends one request with the token and reads the answer; a call that
// does not end within callTimeout fails the test.
func (s *server) callBounded(method, path, contentType string, body []byte, hdr ...string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := boundedClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: no answer after %s: %v\nserver log:\n%s", method, path, time.Since(start).Round(time.Millisecond), err, s.Stderr())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// refusedForSpace fails the test unless an answer is 507 (or 503) saying
// the data volume is full.
func refusedForSpace(t *testing.T, what string, status int, body []byte) {
	t.Helper()
	if (status != http.StatusInsufficientStorage && status != http.StatusServiceUnavailable) || !strings.Contains(string(body), noSpace) {
		t.Errorf("%s on a full disk answered %d %s; want 507 (or 503) saying %q", what, status, body, noSpace)
	}
}

// readiness returns /readyz's status and answer.
func (s *server) readiness() (int, v1.Readiness) {
	s.t.Helper()
	status, body := s.callBounded("GET", "/readyz", "", nil)
	var r v1.Readiness
	if err := json.Unmarshal(body, &r); err != nil {
		s.t.Fatalf("readyz answered %d %s: %v", status, body, err)
	}
	return status, r
}

// asyncInvoke sends one async invoke; its request ID when accepted (202).
func (s *server) asyncInvoke(fn, event string) (id string, status int, body []byte) {
	s.t.Helper()
	status, body = s.callBounded("POST", "/v1/functions/"+fn+"/invoke", "application/json", []byte(event), "X-Invocation-Type", "Event")
	if status == http.StatusAccepted {
		id = decode[v1.Accepted](s.t, body).RequestID
	}
	return id, status, body
}

// storedZip zips files (name → content), stored without compression, so
// that the upload is as large as what it unpacks to.
func storedZip(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, b := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Store}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zerosImageTar is a docker save tarball of an image whose one layer
// holds a file of n zero bytes: small to upload, n bytes to unpack.
func zerosImageTar(t *testing.T, tag string, n int) string {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n), ModTime: time.Unix(1, 0)})
	tw.Write(make([]byte, n))
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	b := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return writeImageTar(t, imageOf(t, ggcr.Config{Cmd: []string{"/zeros"}}, layer), tag)
}

// TestDiskFull fills the server's data volume (a tmpfs of 300 MiB) during
// async load, during a deploy and during an image import. Every refused
// call answers 507 (or 503) saying the volume is full, none is a 400 and
// none hangs; /readyz is 503 with the reason, and /metrics says which
// check fails, until the space is freed; then the server recovers by
// itself, and every async invocation that was accepted (202) runs to its
// end.
func TestDiskFull(t *testing.T) {
	data := tmpfsVolume(t, "300m")
	s := startServerIn(t, data, "--idle-timeout", "1m")
	filler := filepath.Join(data, "filler")

	s.mustCLI("deploy", "work", "--runtime", "provided", "--max-concurrency", "4", fixture("goecho"))
	s.mustCLI("topic", "create", "news")
	if st, r := s.readiness(); st != 200 || r.Status != "ready" {
		t.Fatalf("readyz before the disk is full: %d %+v", st, r)
	}

	// Async load while the disk fills.
	var (
		mu       sync.Mutex
		accepted []string
		refused  int
		stop     = make(chan struct{})
		load     sync.WaitGroup
	)
	for range 4 {
		load.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id, status, body := s.asyncInvoke("work", `{"sleep": 20, "echo": "`+strings.Repeat("x", 2000)+`"}`)
				mu.Lock()
				if id != "" {
					accepted = append(accepted, id)
				} else {
					refused++
					refusedForSpace(t, "async invoke under load", status, body)
					mu.Unlock()
					time.Sleep(50 * time.Millisecond) // refused: do not spin
					continue
				}
				mu.Unlock()
			}
		})
	}
	eventually.True(t, 10*time.Second, "some async invocations accepted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= 50
	})
	fillVolume(t, filler, 0)

	// Readiness says why, in /readyz, the log and the metrics.
	eventually.True(t, 10*time.Second, "/readyz 503 saying the volume is full and events cannot be stored", func() bool {
		fillVolume(t, filler, 0)
		st, r := s.readiness()
		return st == http.StatusServiceUnavailable && r.Status == "not ready" &&
			strings.Contains(r.Reason, "disk: data volume: ") && strings.Contains(r.Reason, "below --min-free-bytes") &&
			strings.Contains(r.Reason, "events: ") && strings.Contains(r.Reason, noSpace)
	})
	_, r := s.readiness()
	t.Logf("readyz on a full disk: %s", r.Reason)
	_, metrics := s.callBounded("GET", "/metrics", "", nil)
	for _, want := range []string{`stratus_ready{check="disk"} 0`, `stratus_ready{check="events"} 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics on a full disk lack %s", want)
		}
	}
	eventually.True(t, 5*time.Second, "the server to log why it is not ready", func() bool {
		return strings.Contains(s.Stderr(), "not ready")
	})

	// Everything that writes answers 507, at once.
	start := time.Now()
	fillVolume(t, filler, 0)
	_, status, body := s.asyncInvoke("work", `{}`)
	refusedForSpace(t, "async invoke", status, body)
	fillVolume(t, filler, 0)
	status, body = s.callBounded("POST", "/v1/topics/news/events", "application/cloudevents+json",
		[]byte(`{"specversion":"1.0","type":"t","source":"s","id":"1","data":{}}`))
	refusedForSpace(t, "topic publish", status, body)
	form, ct := deployForm(t, `{"runtime":"provided"}`, storedZip(t, map[string][]byte{
		"bootstrap": readFile(t, filepath.Join(fixture("goecho"), "bootstrap")), "padding": randomBytes(4 << 20)}))
	fillVolume(t, filler, 0)
	status, body = s.callBounded("PUT", "/v1/functions/late", ct, form)
	refusedForSpace(t, "deploy", status, body)
	tarPath := zerosImageTar(t, "zeros:v1", 8<<20)
	fillVolume(t, filler, 0)
	status, body = s.callBounded("POST", "/v1/images/import?ref=zeros:v1", "application/x-tar", readFile(t, tarPath))
	refusedForSpace(t, "image import", status, body)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the refusals on a full disk took %s", took)
	} else {
		t.Logf("async invoke, topic publish, deploy and image import refused in %s", took.Round(time.Millisecond))
	}

	close(stop)
	load.Wait()
	mu.Lock()
	t.Logf("under load: %d accepted, %d refused", len(accepted), refused)
	mu.Unlock()

	// Space freed: the server recovers by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	eventually.True(t, 30*time.Second, "/readyz 200 once space is freed", func() bool {
		st, _ := s.readiness()
		return st == http.StatusOK
	})
	t.Logf("ready again %s after space was freed", time.Since(freed).Round(time.Millisecond))
	_, metrics = s.callBounded("GET", "/metrics", "", nil)
	for _, check := range []string{"store", "events", "disk"} {
		if want := `stratus_ready{check="` + check + `"} 1`; !strings.Contains(string(metrics), want) {
			t.Errorf("metrics once space is freed lack %s", want)
		}
	}
	id, status, body := s.asyncInvoke("work", `{}`)
	if status != http.StatusAccepted {
		t.Fatalf("async invoke after space was freed: %d %s", status, body)
	}
	accepted = append(accepted, id)
	status, body = s.callBounded("POST", "/v1/topics/news/events", "application/cloudevents+json",
		[]byte(`{"specversion":"1.0","type":"t","source":"s","id":"2","data":{}}`))
	if status != http.StatusAccepted {
		t.Errorf("topic publish after space was freed: %d %s", status, body)
	}

	// Nothing accepted is lost: every accepted invocation ends.
	for _, id := range accepted {
		eventually.Nil(t, 60*time.Second, "invocation "+id+" to end after space was freed", func() error {
			status, body := s.callBounded("GET", "/v1/invocations/"+id, "", nil)
			if status == 200 {
				switch decode[asyncStatus](t, body).State {
				case "succeeded":
					return nil
				case "failed":
					t.Errorf("invocation %s failed: %s", id, body)
					return nil
				}
			}
			return fmt.Errorf("%d %s\nserver log:\n%s", status, body, s.Stderr())
		})
	}

	// A deploy that fills the disk as it goes: 507, nothing kept.
	fillVolume(t, filler, 6<<20)
	form, ct = deployForm(t, `{"runtime":"provided"}`, storedZip(t, map[string][]byte{
		"bootstrap": readFile(t, filepath.Join(fixture("goecho"), "bootstrap")), "padding": randomBytes(24 << 20)}))
	status, body = s.callBounded("PUT", "/v1/functions/big", ct, form)
	refusedForSpace(t, "a deploy that fills the disk", status, body)
	if st, _ := s.callBounded("GET", "/v1/functions/big", "", nil); st != http.StatusNotFound {
		t.Errorf("a deploy refused for space left function big: %d", st)
	}

	// An image import that fills the disk as it unpacks: 507, nothing kept.
	tarPath = zerosImageTar(t, "zeros:v2", 48<<20)
	status, body = s.callBounded("POST", "/v1/images/import?ref=zeros:v2", "application/x-tar", readFile(t, tarPath))
	refusedForSpace(t, "an image import that fills the disk", status, body)
	status, body = s.callBounded("GET", "/v1/images", "", nil)
	if status != 200 || strings.Contains(string(body), "zeros:v2") {
		t.Errorf("image list after a refused import: %d %s", status, body)
	}

	// And once there is room, both work.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "/readyz 200 once space is freed again", func() bool {
		st, _ := s.readiness()
		return st == http.StatusOK
	})
	status, body = s.callBounded("PUT", "/v1/functions/big", ct, form)
	if status != http.StatusCreated {
		t.Errorf("deploy once there is room: %d %s", status, body)
	}
	status, body = s.callBounded("POST", "/v1/images/import?ref=zeros:v2", "application/x-tar", readFile(t, tarPath))
	if status != http.StatusCreated {
		t.Errorf("image import once there is room: %d %s", status, body)
	}
	if os.Getenv("STRATUS_E2E_LOG") != "" {
		t.Log(s.Stderr())
	}
	if strings.Contains(s.Stderr(), "panic") {
		t.Errorf("the server panicked:\n%s", s.Stderr())
	}
}

// TestStartOnASmallDisk: the server starts on a volume far smaller than
// the streams' default limits (1 GiB each), and refuses to start below
// --min-free-bytes, saying so.
func TestStartOnASmallDisk(t *testing.T) {
	data := tmpfsVolume(t, "64m")
	s := startServerIn(t, data)
	s.mustCLI("deploy", "work", "--runtime", "provided", fixture("goecho"))
	if id, status, body := s.asyncInvoke("work", `{}`); status != http.StatusAccepted {
		t.Fatalf("async invoke on a 64 MiB volume: %d %s", status, body)
	} else {
		s.waitState(id, "succeeded", 30*time.Second)
	}
	s.Stop()

	fillVolume(t, filepath.Join(data, "filler"), 10<<20)
	cmd := exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--data", data, "--token", testToken)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the server started with 10 MiB free:\n%s", out)
	}
	if !strings.Contains(string(out), "below --min-free-bytes (32 MiB)") {
		t.Errorf("the server refused to start without saying why:\n%s", out)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("random bytes: %v", err))
	}
	return b
}
