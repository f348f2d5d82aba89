package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// callerJWT is a caller's own credential, which an --auth none workload
// may rely on: it must reach the workload as sent.
const callerJWT = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYWxsZXIifQ.c2lnbmF0dXJl"

// tokenCarriers are the ways a request carries the server's token next to
// the caller's own Authorization value: several values, the scheme in
// other cases, extra spaces, a comma-separated list, Proxy-Authorization.
func tokenCarriers(token string) []struct {
	name string
	hdr  http.Header
} {
	return []struct {
		name string
		hdr  http.Header
	}{
		{"the token second", http.Header{"Authorization": {callerJWT, "Bearer " + token}}},
		{"the token first", http.Header{"Authorization": {"Bearer " + token, callerJWT}}},
		{"case variants", http.Header{"Authorization": {"bearer " + token, callerJWT, "BEARER " + token}}},
		{"extra spaces", http.Header{"Authorization": {"Bearer    " + token, callerJWT}}},
		{"a comma list", http.Header{"Authorization": {callerJWT + ", bEaReR " + token}}},
		{"Proxy-Authorization too", http.Header{"Authorization": {callerJWT, "Bearer " + token}, "Proxy-Authorization": {"Bearer " + token}}},
	}
}

// send sends a request with headers hdr and, when host is not empty,
// Host: host.
func (s *server) send(method, host, path string, hdr http.Header) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, b := s.roundTrip(req)
	return resp.StatusCode, b
}

// TestTokenNeverReachesFunctions: a function, deployed --auth none or with
// the token, never sees the server's token however a caller sends it, and
// sees the caller's own Authorization value.
func TestTokenNeverReachesFunctions(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "pub", "--runtime", "provided.al2023", "--auth", "none", fixture("goapigw"))
	s.mustCLI("deploy", "priv", "--runtime", "provided.al2023", fixture("goapigw"))
	for _, fn := range []string{"pub", "priv"} {
		for _, tc := range tokenCarriers(s.Token) {
			code, body := s.send("GET", "", "/fn/"+fn+"/x", tc.hdr)
			if code != 200 {
				t.Fatalf("%s, %s: %d %s", fn, tc.name, code, body)
			}
			if strings.Contains(string(body), s.Token) {
				t.Errorf("%s, %s: the function saw the server's token: %s", fn, tc.name, body)
			}
			e := decode[apigwEcho](t, body)
			if got := e.Headers["authorization"]; got != callerJWT {
				t.Errorf("%s, %s: the function's authorization header is %q, want the caller's %q", fn, tc.name, got, callerJWT)
			}
		}
	}
	// Without the token, the token-protected function stays closed.
	if code, body := s.send("GET", "", "/fn/priv/x", http.Header{"Authorization": {callerJWT}}); code != 401 {
		t.Errorf("priv without the token: %d %s", code, body)
	}
}

// TestTokenNeverReachesServices: a service, deployed --auth none or with
// the token, reached by its path or by its host name, never sees the
// server's token however a caller sends it, and sees the caller's own
// Authorization value.
func TestTokenNeverReachesServices(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "pub", "--image", "gosvc:v1", "--auth", "none")
	s.mustCLI("service", "deploy", "priv", "--image", "gosvc:v1")
	for _, svc := range []string{"pub", "priv"} {
		for _, route := range []struct{ host, path string }{
			{"", "/svc/" + svc + "/path/x"},
			{svc + ".localhost", "/path/x"},
		} {
			for _, tc := range tokenCarriers(s.Token) {
				code, body := s.send("GET", route.host, route.path, tc.hdr)
				if code != 200 {
					t.Fatalf("%s %s%s, %s: %d %s\n%s", svc, route.host, route.path, tc.name, code, body, s.Stderr())
				}
				if strings.Contains(string(body), s.Token) {
					t.Errorf("%s %s%s, %s: the service saw the server's token: %s", svc, route.host, route.path, tc.name, body)
				}
				var echo struct {
					Headers http.Header `json:"headers"`
				}
				if err := json.Unmarshal(body, &echo); err != nil {
					t.Fatalf("decode %s: %v", body, err)
				}
				if got := echo.Headers["Authorization"]; !reflect.DeepEqual(got, []string{callerJWT}) {
					t.Errorf("%s %s%s, %s: the service's Authorization is %q, want the caller's %q", svc, route.host, route.path, tc.name, got, callerJWT)
				}
			}
		}
	}
	if code, body := s.send("GET", "", "/svc/priv/path/x", http.Header{"Authorization": {callerJWT}}); code != 401 {
		t.Errorf("priv without the token: %d %s", code, body)
	}
}

// TestMetricsNeedToken: /metrics needs the token unless the server runs
// with --metrics-public; /healthz and /readyz never do.
func TestMetricsNeedToken(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "counted", "--runtime", "provided.al2023", fixture("goecho"))
	if resp, body := s.invoke("counted", `{}`); resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	resp, body := s.do("GET", "/metrics", nil, false)
	wantAPIError(t, resp, body, 401, "UnauthorizedException", "token")
	if strings.Contains(string(body), "counted") {
		t.Errorf("/metrics without the token named a function: %s", body)
	}
	resp, body = s.do("GET", "/metrics", nil, true)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `stratus_function_cold_starts_total{function="counted"} 1`) {
		t.Errorf("/metrics with the token: %d %.300s", resp.StatusCode, body)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, body := s.do("GET", p, nil, false); resp.StatusCode != 200 {
			t.Errorf("%s without the token: %d %s", p, resp.StatusCode, body)
		}
	}

	pub := startServer(t, "--metrics-public")
	if resp, body := pub.do("GET", "/metrics", nil, false); resp.StatusCode != 200 || !strings.Contains(string(body), "stratus_sandbox_starts_total") {
		t.Errorf("/metrics without the token under --metrics-public: %d %.300s", resp.StatusCode, body)
	}
	// --metrics-public opens /metrics only.
	resp, body = pub.do("GET", "/v1/functions", nil, false)
	wantAPIError(t, resp, body, 401, "UnauthorizedException", "")
}

// TestInfo: GET /v1/info, through `stratus info`, says the server's
// version, region and sandbox driver and why; it needs the token.
func TestInfo(t *testing.T) {
	s := startServer(t, "--region", "eu-test-1")
	info := decode[v1.Info](t, []byte(s.mustCLI("info", "-o", "json")))
	if info.Version == "" || info.Region != "eu-test-1" {
		t.Errorf("info: version %q region %q", info.Version, info.Region)
	}
	switch info.Sandbox.Driver {
	case "runc", "process":
	default:
		t.Errorf("info: sandbox driver %q, want runc or process", info.Sandbox.Driver)
	}
	if info.Sandbox.Why == "" || info.Sandbox.Isolated != (info.Sandbox.Driver == "runc") {
		t.Errorf("info: sandbox %+v", info.Sandbox)
	}
	if log := s.Stderr(); !strings.Contains(log, info.Sandbox.Why) && !strings.Contains(log, strconv.Quote(info.Sandbox.Why)) {
		t.Errorf("info: why %q is not the one the server logged:\n%s", info.Sandbox.Why, s.Stderr())
	}
	table := s.mustCLI("info")
	for _, want := range []string{"Version:", info.Version, "Region:", "eu-test-1", "Sandbox:", info.Sandbox.Driver, "Why:"} {
		if !strings.Contains(table, want) {
			t.Errorf("stratus info does not show %q:\n%s", want, table)
		}
	}
	resp, body := s.do("GET", "/v1/info", nil, false)
	wantAPIError(t, resp, body, 401, "UnauthorizedException", "")
}
