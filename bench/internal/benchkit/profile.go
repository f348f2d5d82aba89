package benchkit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// FetchProfile saves what url (a net/http/pprof profile endpoint) answers
// to path.
func FetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("fetch cpu profile: %s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetch cpu profile: %w", err)
	}
	return f.Close()
}

// PprofTop is `go tool pprof -top -cum` of the profile at path taken of
// binary bin, with at most nodes lines.
func PprofTop(ctx context.Context, bin, path string, nodes int) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", fmt.Sprintf("-nodecount=%d", nodes), bin, path).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	return string(out), nil
}

// totalSamples reads the samples' total from pprof's header ("Duration:
// 8s, Total samples = 9.87s (123.4%)").
var totalSamples = regexp.MustCompile(`Total samples = ([0-9.]+)(ms|s)`)

// Condense keeps the header of a `pprof -top -cum` listing and at most n
// of its lines whose frame interesting matches, and reads the samples'
// total from the header.
func Condense(top string, n int, interesting *regexp.Regexp) (string, time.Duration) {
	var b strings.Builder
	var total time.Duration
	kept := 0
	header := true
	for _, l := range strings.Split(strings.TrimSpace(top), "\n") {
		if header {
			if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") {
				continue
			}
			if m := totalSamples.FindStringSubmatch(l); m != nil {
				total, _ = time.ParseDuration(m[1] + m[2])
			}
			b.WriteString(l + "\n")
			if strings.Contains(l, "flat%") {
				header = false
			}
			continue
		}
		if kept < n && interesting.MatchString(strings.TrimSpace(strings.TrimSuffix(l, " (inline)"))) {
			b.WriteString(l + "\n")
			kept++
		}
	}
	return strings.TrimRight(b.String(), "\n"), total
}
