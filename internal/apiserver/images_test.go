package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/image"
)

// fakePuller is an imageStore whose Pull reports the progress steps and
// then returns img or err. Only Pull is used.
type fakePuller struct {
	imageStore
	steps       [][2]int64 // done, total
	img         *image.Image
	err         error
	hadProgress bool // the last Pull got a Progress function
}

func (f *fakePuller) Pull(ctx context.Context, ref string, opt image.PullOptions) (*image.Image, error) {
	f.hadProgress = opt.Progress != nil
	for _, s := range f.steps {
		if opt.Progress != nil {
			opt.Progress(s[0], s[1])
		}
	}
	return f.img, f.err
}

func TestPullStream(t *testing.T) {
	img := &image.Image{
		Ref: "example.com/app:v1", Digest: "sha256:abc", Layers: []string{"sha256:def"}, Size: 42,
		Config: image.ImageConfig{Entrypoint: []string{"/app"}}, CreatedAt: time.Unix(1, 0).UTC(),
	}
	view := imageView(img)
	steps := [][2]int64{{1, 4}, {4, 4}}
	for _, tc := range []struct {
		name        string
		accept      string
		store       *fakePuller
		asked       bool // for progress: Pull gets a Progress function
		status      int
		contentType string
		want        []v1.ImagePullEvent // the lines of a stream
		wantPlain   any                 // the answer otherwise
	}{{
		name: "progress then the image", accept: v1.MediaTypeNDJSON,
		store: &fakePuller{steps: steps, img: img}, asked: true,
		status: http.StatusOK, contentType: v1.MediaTypeNDJSON,
		want: []v1.ImagePullEvent{{Done: 1, Total: 4}, {Done: 4, Total: 4}, {Done: 4, Total: 4, Image: &view}},
	}, {
		name: "progress then an error", accept: "application/json, application/x-ndjson",
		store: &fakePuller{steps: steps[:1], err: fmt.Errorf("pull image: layer 1: bad digest: %w", stratus.ErrInvalid)}, asked: true,
		status: http.StatusOK, contentType: v1.MediaTypeNDJSON,
		want: []v1.ImagePullEvent{{Done: 1, Total: 4}, {Done: 1, Total: 4, Status: http.StatusBadRequest,
			Error: &v1.Error{Code: v1.CodeInvalid, Message: "pull image: layer 1: bad digest: " + stratus.ErrInvalid.Error()}}},
	}, {
		name: "an internal error stays inside", accept: v1.MediaTypeNDJSON,
		store: &fakePuller{steps: steps[:1], err: errors.New("disk /secret/path is full")}, asked: true,
		status: http.StatusOK, contentType: v1.MediaTypeNDJSON,
		want: []v1.ImagePullEvent{{Done: 1, Total: 4}, {Done: 1, Total: 4, Status: http.StatusInternalServerError,
			Error: &v1.Error{Code: v1.CodeInternal, Message: "internal error"}}},
	}, {
		name: "an error before any progress is a plain error answer", accept: v1.MediaTypeNDJSON,
		store: &fakePuller{err: fmt.Errorf("pull image: no such tag: %w", stratus.ErrNotFound)}, asked: true,
		status: http.StatusNotFound, contentType: "application/json",
		wantPlain: v1.Error{Code: v1.CodeNotFound, Message: "pull image: no such tag: " + stratus.ErrNotFound.Error()},
	}, {
		name:   "without the Accept header, the image at the end",
		store:  &fakePuller{steps: steps, img: img},
		status: http.StatusCreated, contentType: "application/json",
		wantPlain: view,
	}, {
		name: "ndjson refused with q=0", accept: v1.MediaTypeNDJSON + ";q=0, application/json",
		store:  &fakePuller{steps: steps, img: img},
		status: http.StatusCreated, contentType: "application/json",
		wantPlain: view,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(New(Config{
				Token: "tok", Log: slog.New(slog.DiscardHandler),
				Images: ImagesConfig{Store: tc.store, UploadDir: t.TempDir()},
			}))
			defer srv.Close()
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/images/pull", bytes.NewReader([]byte(`{"ref":"example.com/app:v1"}`)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer tok")
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.contentType {
				t.Fatalf("answer %d %s, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.contentType)
			}
			if tc.store.hadProgress != tc.asked {
				t.Errorf("Pull got a Progress function: %v, want %v", tc.store.hadProgress, tc.asked)
			}
			if tc.want == nil {
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := json.Marshal(tc.wantPlain)
				if diff := cmp.Diff(string(want), string(bytes.TrimSpace(got))); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
				return
			}
			var got []v1.ImagePullEvent
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var ev v1.ImagePullEvent
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				got = append(got, ev)
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPullStreamThrottle steps the clock: a progress line goes at most
// every pullProgressEvery, except the first and the one with every byte.
func TestPullStreamThrottle(t *testing.T) {
	rec := httptest.NewRecorder()
	now := time.Unix(1000, 0)
	p := &pullStream{w: rec, rc: http.NewResponseController(rec), now: func() time.Time { return now }}
	for _, step := range []struct {
		after       time.Duration
		done, total int64
	}{
		{0, 10, 100},                     // the first: sent
		{50 * time.Millisecond, 20, 100}, // too soon
		{49 * time.Millisecond, 30, 100}, // still too soon
		{time.Millisecond, 40, 100},      // 100ms after the first: sent
		{10 * time.Millisecond, 50, 100}, // too soon
		{time.Millisecond, 100, 100},     // every byte: sent
	} {
		now = now.Add(step.after)
		p.progress(step.done, step.total)
	}
	var got []int64
	for line := range bytes.Lines(rec.Body.Bytes()) {
		var ev v1.ImagePullEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, ev.Done)
	}
	if diff := cmp.Diff([]int64{10, 40, 100}, got); diff != "" {
		t.Errorf("lines sent, by done (-want +got):\n%s", diff)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != v1.MediaTypeNDJSON || !rec.Flushed {
		t.Errorf("answer %d %q, flushed %v", rec.Code, rec.Header().Get("Content-Type"), rec.Flushed)
	}
}
