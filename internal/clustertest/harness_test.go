package clustertest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc\r\n\n", 5, "a\nb\nc"},
		{"only", 1, "only"},
		{"", 3, ""},
	} {
		if got := LastLines([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("LastLines(%q, %d) = %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestGetOK(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		for i := range 10 {
			fmt.Fprintf(w, "line %d\n", i)
		}
	}))
	defer srv.Close()
	if err := GetOK(context.Background(), srv.Client(), srv.URL+"/ok"); err != nil {
		t.Errorf("GET /ok: %v", err)
	}
	err := GetOK(context.Background(), srv.Client(), srv.URL+"/down")
	if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable") || !strings.HasSuffix(err.Error(), "line 5\nline 6\nline 7\nline 8\nline 9") {
		t.Errorf("GET /down: %v; want the status and the body's last 5 lines", err)
	}
}

func TestFreePorts(t *testing.T) {
	ports := FreePorts(t, 4)
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("FreePorts(4) = %v; want 4 distinct ports", ports)
		}
		if low, high := portRange(); p < low || p >= high {
			t.Errorf("port %d is outside %d-%d, below the ephemeral range", p, low, high)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}
