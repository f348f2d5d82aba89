package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// rapiThief is a Python handler that takes the Runtime API address in
// its event (another instance's) and asks it for that instance's next
// invocation; it reports what it got.
const rapiThief = `import json
import urllib.error
import urllib.request


def handler(event, context):
    url = "http://" + event["addr"] + "/2018-06-01/runtime/invocation/next"
    try:
        with urllib.request.urlopen(url, timeout=event["wait"]) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}
    except TimeoutError as e:
        return {"status": 0, "error": "timeout: " + repr(e)}
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            return {"status": 0, "error": "timeout: " + repr(e)}
        return {"status": 0, "error": repr(e)}
    except Exception as e:
        return {"status": 0, "error": repr(e)}
`

// rapiVictim is a Python handler that answers with its own name and the
// event's n.
const rapiVictim = `def handler(event, context):
    return {"fn": "victim", "n": event["n"]}
`

// TestRuntimeAPIOnlyItsInstance: on the process driver, where instances
// share the host's loopback and user, function A reads the address of
// function B's Runtime API (as it could from /proc; the test reads it
// from the host and passes it in A's event) and asks it for B's next
// invocation while B is invoked. A is refused (403, or the connection
// closed), B's callers get B's own answers, and the server says so in
// its log. The server's start line says that functions run unisolated.
func TestRuntimeAPIOnlyItsInstance(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t, "--sandbox", "process")
	if log := s.Stderr(); !strings.Contains(log, `level=WARN msg="sandbox driver" driver=process why="process: UNISOLATED`) {
		t.Errorf("the start line does not warn that functions run unisolated:\n%s", log)
	}
	code := writeFiles(t, map[string]string{"thief.py": rapiThief, "victim.py": rapiVictim})
	s.mustCLI("deploy", "victim", "--runtime", "python3", "--handler", "victim.handler", "--timeout", "20", code)
	s.mustCLI("deploy", "thief", "--runtime", "python3", "--handler", "thief.handler", "--timeout", "30", code)
	resp, body := s.invoke("victim", `{"n":0}`)
	wantOK(t, resp, body)

	var addr string
	eventually.True(t, 10*time.Second, "the victim's instance", func() bool {
		for _, p := range instanceProcesses(s.Data) {
			env, _ := os.ReadFile(filepath.Join("/proc", p.pid, "environ"))
			vars := strings.Split(string(env), "\x00")
			for _, kv := range vars {
				if kv == "AWS_LAMBDA_FUNCTION_NAME=victim" {
					for _, kv := range vars {
						if v, ok := strings.CutPrefix(kv, "AWS_LAMBDA_RUNTIME_API="); ok {
							addr = v
							return true
						}
					}
				}
			}
		}
		return false
	})

	// The thief asks for the victim's next invocation, and waits for it
	// up to 8 s, while the victim is invoked.
	type theft struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
		Error  string `json:"error"`
	}
	stolen := make(chan theft, 1)
	errc := make(chan error, 1)
	go func() {
		status, b, err := invokeFn(s, "thief", fmt.Sprintf(`{"addr":%q,"wait":8}`, addr))
		if err != nil || status != http.StatusOK {
			errc <- fmt.Errorf("invoke thief: %d %s %v", status, b, err)
			return
		}
		var th theft
		if err := json.Unmarshal(b, &th); err != nil {
			errc <- fmt.Errorf("thief answered %s: %v", b, err)
			return
		}
		stolen <- th
	}()
	// The victim is invoked once the thief's request has reached the
	// victim's Runtime API: the server logged its refusal, or the thief
	// has its answer.
	refusal := regexp.MustCompile(`msg="runtime api: refused a connection from outside the instance" .*fn=victim `)
	eventually.True(t, 30*time.Second, "the thief's request to reach the victim's Runtime API", func() bool {
		return refusal.MatchString(s.Stderr()) || len(stolen) > 0 || len(errc) > 0
	})
	for n := 1; n <= 4; n++ {
		resp, body := s.invoke("victim", fmt.Sprintf(`{"n":%d}`, n))
		wantOK(t, resp, body)
		a := decode[struct {
			Fn string `json:"fn"`
			N  int    `json:"n"`
		}](t, body)
		if a.Fn != "victim" || a.N != n {
			t.Errorf("the victim's caller %d got %s, want the victim's answer to it", n, body)
		}
	}
	select {
	case th := <-stolen:
		refused := th.Status >= 400 || (th.Status == 0 && !strings.HasPrefix(th.Error, "timeout"))
		if !refused {
			t.Errorf("the thief's GET http://%s/2018-06-01/runtime/invocation/next: %+v, want it refused", addr, th)
		}
		if th.Status != 0 && !strings.Contains(th.Body, "AccessDeniedException") {
			t.Errorf("the thief was refused with %d %s, want AccessDeniedException", th.Status, th.Body)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(40 * time.Second):
		t.Fatal("the thief did not answer")
	}
	if log := s.Stderr(); !refusal.MatchString(log) {
		t.Errorf("the server's log does not say it refused the thief:\n%s", log)
	}
}

// invokeFn is s.invoke for use outside the test's goroutine: it returns
// its failures.
func invokeFn(s *server, name, event string) (int, []byte, error) {
	req, err := http.NewRequest("POST", s.URL+"/v1/functions/"+name+"/invoke", bytes.NewReader([]byte(event)))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
