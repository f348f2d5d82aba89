package e2e

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/json"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// zipItem is one entry of a zip built by a test.
type zipItem struct {
	name    string
	body    string
	mode    fs.FileMode // 0: 0644 for files
	symlink bool        // body is the link's target
	store   bool        // stored, not deflated
	zeros   int         // this many zero bytes follow body
}

// zipOf returns a zip of items, written as given: names are not
// checked or cleaned, so it can hold what a hostile client would send.
func zipOf(t *testing.T, items ...zipItem) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestSpeed) })
	for _, it := range items {
		hdr := &zip.FileHeader{Name: it.name, Method: zip.Deflate}
		if it.store || it.symlink {
			hdr.Method = zip.Store
		}
		switch {
		case it.symlink:
			hdr.SetMode(fs.ModeSymlink | 0o777)
		case strings.HasSuffix(it.name, "/"):
			hdr.SetMode(fs.ModeDir | 0o755)
		case it.mode != 0:
			hdr.SetMode(it.mode)
		default:
			hdr.SetMode(0o644)
		}
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			t.Fatalf("zip entry %q: %v", it.name, err)
		}
		if _, err := io.WriteString(w, it.body); err != nil {
			t.Fatal(err)
		}
		zeros := make([]byte, 1<<20)
		for n := it.zeros; n > 0; n -= len(zeros) {
			if _, err := w.Write(zeros[:min(n, len(zeros))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeZipFile writes b to a new .zip file and returns its path.
func writeZipFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "code.zip")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// deployForm builds the multipart form PUT /v1/functions/NAME takes: a
// config part (JSON, none if empty), then a code part (none if nil). It
// returns the body and its content type.
func deployForm(t *testing.T, config string, code []byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if config != "" {
		fw, err := mw.CreateFormField("config")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write([]byte(config))
	}
	if code != nil {
		cw, err := mw.CreateFormFile("code", "code.zip")
		if err != nil {
			t.Fatal(err)
		}
		cw.Write(code)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// deployAPI deploys through the HTTP API and returns the answer. name is
// put in the path as given, so it may be escaped.
func deployAPI(t *testing.T, s *server, name, config string, code []byte) (status int, body []byte) {
	t.Helper()
	form, ct := deployForm(t, config, code)
	resp, b := s.do("PUT", "/v1/functions/"+name, form, true, "Content-Type", ct)
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("PUT /v1/functions/%s: error with content type %q", name, ct)
		}
	}
	return resp.StatusCode, b
}

// serverState is what must not change when a bad request is refused.
type serverState struct {
	Functions []functionJSON
	Code      []string // entries of the data dir's code folder
	Tmp       []string // entries of the data dir's tmp folder
}

func serverStateOf(t *testing.T, s *server) serverState {
	t.Helper()
	fns := decode[[]functionJSON](t, []byte(s.mustCLI("ls", "-o", "json")))
	sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
	for i := range fns {
		fns[i].Instances = struct {
			Live int `json:"live"`
			Idle int `json:"idle"`
			Busy int `json:"busy"`
		}{}
	}
	ls := func(dir string) []string {
		ents, err := os.ReadDir(filepath.Join(s.Data, dir))
		if err != nil {
			t.Fatalf("read data dir: %v", err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	return serverState{Functions: fns, Code: ls("code"), Tmp: ls("tmp")}
}

const keepApp = "def handler(event, context):\n    return {'kept': True}\n"

// TestBadDeploy sends every kind of bad deploy, through the CLI and the
// HTTP API, and checks that each gets a clear 4xx JSON error (a clear
// message and a non-zero exit from the CLI) and changes nothing.
func TestBadDeploy(t *testing.T) {
	needTool(t, "python3")
	// Small archive limits, set through the server's config file.
	cfgFile := filepath.Join(t.TempDir(), "stratus.json")
	if err := os.WriteFile(cfgFile, []byte(`{"maxZipBytes": 65536, "maxUnzippedBytes": 1048576}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--config", cfgFile)
	keepDir := writeFiles(t, map[string]string{"app.py": keepApp})
	s.mustCLI("deploy", "keep", "--runtime", "python3", "--handler", "app.handler", keepDir)
	before := serverStateOf(t, s)
	if len(before.Functions) != 1 || len(before.Code) == 0 {
		t.Fatalf("baseline: %+v", before)
	}

	goodZip := zipOf(t, zipItem{name: "app.py", body: keepApp})
	bootstrap := zipItem{name: "bootstrap", body: "#!/bin/sh\nexit 0\n", mode: 0o755}
	provided := `{"runtime":"provided"}`

	// API cases: name in the path, config part, code part, and the answer.
	type apiCase struct {
		what, name, config string
		code               []byte
		status             int
		errCode, msg       string
	}
	invalid := "InvalidParameterValueException"
	cases := []apiCase{
		{"a name with a space", "bad%20name", provided, zipOf(t, bootstrap), 400, invalid, "name"},
		{"a 65-character name", strings.Repeat("a", 65), provided, zipOf(t, bootstrap), 400, invalid, "1-64 characters"},
		{"a name with a slash", "a%2Fb", provided, zipOf(t, bootstrap), 400, invalid, "name"},
		{"a name with a dot", "a.b", provided, zipOf(t, bootstrap), 400, invalid, "name"},
		{"an unknown runtime", "keep", `{"runtime":"cobol"}`, goodZip, 400, invalid, `unknown runtime "cobol"`},
		{"no runtime", "newfn", `{}`, goodZip, 400, invalid, "runtime is required"},
		{"python3 without a handler", "keep", `{"runtime":"python3"}`, goodZip, 400, invalid, "handler is required"},
		{"nodejs without a handler", "newfn", `{"runtime":"nodejs"}`, goodZip, 400, invalid, "handler is required"},
		{"a handler without a function", "keep", `{"runtime":"python3","handler":"app"}`, goodZip, 400, invalid, "module.function"},
		{"a python module not in the code", "keep", `{"runtime":"python3","handler":"missing.handler"}`, goodZip, 400, invalid, "no module missing.py"},
		{"a node file not in the code", "newfn", `{"runtime":"nodejs","handler":"index.handler"}`, goodZip, 400, invalid, "no file index.js"},
		{"provided without a bootstrap", "keep", provided, goodZip, 400, invalid, "bootstrap"},
		{"a bootstrap that is a folder", "newfn", provided, zipOf(t, zipItem{name: "bootstrap/"}, zipItem{name: "bootstrap/x", body: "x"}), 400, invalid, "bootstrap"},
		{"a bootstrap linking to a file that is not executable", "newfn", provided,
			zipOf(t, zipItem{name: "run.sh", body: "#!/bin/sh\n"}, zipItem{name: "bootstrap", body: "run.sh", symlink: true}), 400, invalid, "not executable"},
		{"memory 127 MB", "keep", `{"runtime":"python3","handler":"app.handler","memoryMB":127}`, goodZip, 400, invalid, "memory 127 MB"},
		{"memory 10241 MB", "keep", `{"runtime":"python3","handler":"app.handler","memoryMB":10241}`, goodZip, 400, invalid, "memory 10241 MB"},
		{"timeout 901 s", "keep", `{"runtime":"python3","handler":"app.handler","timeoutSec":901}`, goodZip, 400, invalid, "timeout 901 s"},
		{"timeout -1 s", "keep", `{"runtime":"python3","handler":"app.handler","timeoutSec":-1}`, goodZip, 400, invalid, "timeout -1 s"},
		{"an unknown auth mode", "keep", `{"runtime":"python3","handler":"app.handler","auth":"open"}`, goodZip, 400, invalid, "auth"},
		{"a reserved environment variable", "keep", `{"runtime":"python3","handler":"app.handler","env":{"AWS_LAMBDA_RUNTIME_API":"x"}}`, goodZip, 400, invalid, "reserved"},
		{"an unknown config field", "keep", `{"runtime":"python3","handler":"app.handler","memory":256}`, goodZip, 400, invalid, "memory"},
		{"a config that is not JSON", "keep", `runtime=python3`, goodZip, 400, invalid, "config"},
		{"no code part", "keep", `{"runtime":"python3","handler":"app.handler"}`, nil, 400, invalid, "code"},
		{"an empty code part", "keep", `{"runtime":"python3","handler":"app.handler"}`, []byte{}, 400, invalid, "empty"},

		// Hostile archives.
		{"a zip entry ../evil", "keep", provided, zipOf(t, bootstrap, zipItem{name: "../evil", body: "x"}), 400, invalid, "escapes the code folder"},
		{"a zip entry a/../../evil", "newfn", provided, zipOf(t, bootstrap, zipItem{name: "a/../../evil", body: "x"}), 400, invalid, "escapes the code folder"},
		{"an absolute zip entry", "keep", provided, zipOf(t, bootstrap, zipItem{name: "/tmp/stratus-e2e-evil", body: "x"}), 400, invalid, "absolute"},
		{"a symlink escaping the folder", "keep", provided, zipOf(t, bootstrap, zipItem{name: "link", body: "../../../etc/passwd", symlink: true}), 400, invalid, "link"},
		{"an absolute symlink", "newfn", provided, zipOf(t, bootstrap, zipItem{name: "link", body: "/etc/passwd", symlink: true}), 400, invalid, "link"},
		{"a file written through a symlink", "keep", provided,
			zipOf(t, bootstrap, zipItem{name: "dir", body: "../..", symlink: true}, zipItem{name: "dir/evil", body: "x"}), 400, invalid, ""},
		{"a corrupt zip", "keep", provided, []byte("PK\x03\x04 this is not really a zip file at all"), 400, invalid, "not a valid zip"},
		{"a truncated zip", "newfn", provided, zipOf(t, bootstrap, zipItem{name: "data", body: strings.Repeat("stratus ", 2000)})[:300], 400, invalid, "zip"},
		{"a zip over the zipped limit", "keep", provided, zipOf(t, bootstrap, zipItem{name: "blob", zeros: 100 << 10, store: true}), 413, "RequestTooLargeException", "64 KB"},
		{"a zip over the unzipped limit", "keep", provided, zipOf(t, bootstrap, zipItem{name: "zeros", zeros: 2 << 20}), 413, "RequestTooLargeException", "unzips to more than the 1 MB limit"},
	}
	for _, c := range cases {
		status, body := deployAPI(t, s, c.name, c.config, c.code)
		if status != c.status {
			t.Errorf("deploy with %s: status %d, want %d: %s", c.what, status, c.status, body)
			continue
		}
		var e apiError
		if err := jsonStrict(body, &e); err != nil || e.Code != c.errCode || e.Message == "" || !strings.Contains(e.Message, c.msg) {
			t.Errorf("deploy with %s: error %s, want code %s and a message containing %q", c.what, body, c.errCode, c.msg)
		}
	}
	if _, err := os.Lstat("/tmp/stratus-e2e-evil"); err == nil {
		t.Errorf("an absolute zip entry was written to /tmp/stratus-e2e-evil")
	}
	for _, p := range []string{filepath.Join(s.Data, "evil"), filepath.Join(filepath.Dir(s.Data), "evil"), filepath.Join(s.Data, "code", "evil"), filepath.Join(s.Data, "tmp", "evil")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("a hostile zip entry was written to %s", p)
		}
	}

	// Bodies that are not the multipart form.
	for _, c := range []struct {
		what, contentType string
		body              []byte
	}{
		{"a JSON body", "application/json", []byte(`{"runtime":"provided"}`)},
		{"a bare zip", "application/zip", zipOf(t, bootstrap)},
		{"no content type", "", zipOf(t, bootstrap)},
		{"a multipart body without a boundary", "multipart/form-data", []byte("--x\r\n")},
	} {
		var hdr []string
		if c.contentType != "" {
			hdr = []string{"Content-Type", c.contentType}
		}
		resp, body := s.do("PUT", "/v1/functions/keep", c.body, true, hdr...)
		wantAPIError(t, resp, body, 400, invalid, "multipart")
	}
	// The code part before the config part.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	cw, _ := mw.CreateFormFile("code", "code.zip")
	cw.Write(goodZip)
	fw, _ := mw.CreateFormField("config")
	fw.Write([]byte(`{"runtime":"python3","handler":"app.handler"}`))
	mw.Close()
	resp, body := s.do("PUT", "/v1/functions/keep", buf.Bytes(), true, "Content-Type", mw.FormDataContentType())
	wantAPIError(t, resp, body, 400, invalid, "before")

	// The CLI: the same refusals, a message on stderr, a non-zero exit.
	zipPath := func(items ...zipItem) string { return writeZipFile(t, zipOf(t, items...)) }
	cliCases := []struct {
		what string
		args []string
		code int
		msg  string
	}{
		{"a name with a space", []string{"deploy", "bad name", "--runtime", "python3", "--handler", "app.handler", keepDir}, 2, "1-64 characters"},
		{"a 65-character name", []string{"deploy", strings.Repeat("b", 65), "--runtime", "python3", "--handler", "app.handler", keepDir}, 2, "1-64 characters"},
		{"a name with a slash", []string{"deploy", "a/b", "--runtime", "python3", "--handler", "app.handler", keepDir}, 2, "1-64 characters"},
		{"an unknown runtime", []string{"deploy", "keep", "--runtime", "cobol", keepDir}, 1, `unknown runtime "cobol"`},
		{"no runtime", []string{"deploy", "keep", keepDir}, 2, "runtime"},
		{"python3 without a handler", []string{"deploy", "keep", "--runtime", "python3", keepDir}, 1, "handler is required"},
		{"nodejs without a handler", []string{"deploy", "newfn", "--runtime", "nodejs", keepDir}, 1, "handler is required"},
		{"a handler file not in the code", []string{"deploy", "keep", "--runtime", "python3", "--handler", "nothere.handler", keepDir}, 1, "no module nothere.py"},
		{"provided without a bootstrap", []string{"deploy", "keep", "--runtime", "provided", keepDir}, 1, "bootstrap"},
		{"memory 127", []string{"deploy", "keep", "--runtime", "python3", "--handler", "app.handler", "--memory", "127", keepDir}, 1, "memory 127 MB: must be between 128 and 10240"},
		{"memory 10241", []string{"deploy", "keep", "--runtime", "python3", "--handler", "app.handler", "--memory", "10241", keepDir}, 1, "memory 10241 MB: must be between 128 and 10240"},
		{"memory 0", []string{"deploy", "keep", "--runtime", "python3", "--handler", "app.handler", "--memory", "0", keepDir}, 2, "--memory 0: must be between 128 and 10240"},
		{"timeout 0", []string{"deploy", "keep", "--runtime", "python3", "--handler", "app.handler", "--timeout", "0", keepDir}, 2, "--timeout 0: must be between 1 and 900"},
		{"timeout 901", []string{"deploy", "keep", "--runtime", "python3", "--handler", "app.handler", "--timeout", "901", keepDir}, 1, "timeout 901 s: must be between 1 and 900"},
		{"a zip with ../evil", []string{"deploy", "keep", "--runtime", "provided", zipPath(bootstrap, zipItem{name: "../evil", body: "x"})}, 1, "escapes the code folder"},
		{"a zip with an absolute path", []string{"deploy", "keep", "--runtime", "provided", zipPath(bootstrap, zipItem{name: "/etc/evil", body: "x"})}, 1, "absolute"},
		{"a zip with an escaping symlink", []string{"deploy", "keep", "--runtime", "provided", zipPath(bootstrap, zipItem{name: "up", body: "../../x", symlink: true})}, 1, "up"},
		{"a corrupt zip", []string{"deploy", "keep", "--runtime", "provided", writeZipFile(t, []byte("not a zip"))}, 1, "not a valid zip"},
		{"a zip over the limit", []string{"deploy", "keep", "--runtime", "provided", zipPath(bootstrap, zipItem{name: "blob", zeros: 100 << 10, store: true})}, 1, "64 KB"},
		{"a folder that does not exist", []string{"deploy", "keep", "--runtime", "provided", filepath.Join(keepDir, "nothere")}, 2, "nothere"},
		{"a file that is not a zip", []string{"deploy", "keep", "--runtime", "python3", "--handler", "app.handler", filepath.Join(keepDir, "app.py")}, 2, ".zip"},
		{"a bad --env", []string{"deploy", "keep", "--runtime", "python3", "--handler", "app.handler", "--env", "NOEQUALS", keepDir}, 2, "KEY=VALUE"},
	}
	for _, c := range cliCases {
		r := s.cli(c.args...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.msg) || r.Stdout != "" {
			t.Errorf("deploy with %s: exit %d (want %d), stdout %q, stderr %q (want %q)", c.what, r.Code, c.code, r.Stdout, r.Stderr, c.msg)
		}
	}

	// Nothing changed: the same functions, versions, code and no leftovers.
	after := serverStateOf(t, s)
	if !reflect.DeepEqual(after, before) {
		a, _ := json.MarshalIndent(after, "", " ")
		b, _ := json.MarshalIndent(before, "", " ")
		t.Errorf("bad deploys changed the server's state:\nbefore %s\nafter %s", b, a)
	}
	if out := s.mustCLI("invoke", "keep"); strings.TrimSpace(out) != `{"kept": true}` && strings.TrimSpace(out) != `{"kept":true}` {
		t.Errorf("invoke keep after the bad deploys printed %q", out)
	}
	if r := s.cli("get", "newfn"); r.Code == 0 {
		t.Errorf("a refused deploy created function newfn: %s", r.Stdout)
	}
}

// TestBootstrapMadeExecutable checks that a bootstrap without its
// executable bit (as zips made on some systems carry it) is made
// executable when the code is unpacked, so it runs.
func TestBootstrapMadeExecutable(t *testing.T) {
	s := startServer(t)
	b, err := os.ReadFile(filepath.Join(fixture("gonoop"), "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	z := zipOf(t, zipItem{name: "bootstrap", body: string(b), mode: 0o644})
	s.mustCLI("deploy", "plainmode", "--runtime", "provided", writeZipFile(t, z))
	if out := s.mustCLI("invoke", "plainmode"); strings.TrimSpace(out) != `{"ok":true}` {
		t.Errorf("invoke printed %q", out)
	}
}

// TestBadInvoke checks invocations the server must refuse: unknown
// functions, events that are not JSON or over 6 MB.
func TestBadInvoke(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "fn", "--runtime", "provided", fixture("goecho"))
	s.mustCLI("deploy", "pub", "--runtime", "provided", "--auth", "none", fixture("goapigw"))

	// Unknown functions: 404 everywhere.
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/functions/nope/invoke"},
		{"GET", "/v1/functions/nope"},
		{"DELETE", "/v1/functions/nope"},
		{"GET", "/v1/functions/nope/logs"},
		{"GET", "/v1/functions/nope/invocations"},
		{"GET", "/fn/nope"},
	} {
		resp, body := s.do(c.method, c.path, []byte(`{}`), true)
		wantAPIError(t, resp, body, 404, "ResourceNotFoundException", `"nope"`)
	}
	if r := s.cli("invoke", "nope"); r.Code != 1 || !strings.Contains(r.Stderr, `function "nope"`) {
		t.Errorf("cli invoke of an unknown function: exit %d stderr %q", r.Code, r.Stderr)
	}

	// Events that are not JSON.
	for _, ev := range []string{"not json", `{"a":1`, `{"a":1} trailing`, "\xff\xfe"} {
		resp, body := s.invoke("fn", ev)
		wantAPIError(t, resp, body, 400, "InvalidParameterValueException", "not valid JSON")
	}
	if r := s.cli("invoke", "fn", "--data", "not json"); r.Code != 2 || !strings.Contains(r.Stderr, "not valid JSON") {
		t.Errorf("cli invoke --data 'not json': exit %d stderr %q", r.Code, r.Stderr)
	}
	badFile := filepath.Join(t.TempDir(), "event.json")
	os.WriteFile(badFile, []byte("{oops"), 0o644)
	if r := s.cli("invoke", "fn", "--data", "@"+badFile); r.Code != 2 || !strings.Contains(r.Stderr, "not valid JSON") {
		t.Errorf("cli invoke --data @bad-file: exit %d stderr %q", r.Code, r.Stderr)
	}
	if r := s.cli("invoke", "fn", "--data", "@"+badFile+".missing"); r.Code != 2 {
		t.Errorf("cli invoke --data @missing-file: exit %d stderr %q", r.Code, r.Stderr)
	}

	// Events over 6 MB, on both routes; one just under passes.
	big := func(n int) []byte {
		b := make([]byte, n)
		copy(b, `{"echo":"`)
		for i := 9; i < n-2; i++ {
			b[i] = 'x'
		}
		copy(b[n-2:], `"}`)
		return b
	}
	resp, body := s.do("POST", "/v1/functions/fn/invoke", big(6<<20+1), true)
	wantAPIError(t, resp, body, 413, "RequestTooLargeException", "limit")
	resp, body = s.do("POST", "/fn/pub/upload", big(6<<20+1), false)
	wantAPIError(t, resp, body, 413, "RequestTooLargeException", "limit")
	// Chunked (the body's length is unknown to the client), without a
	// Content-Length the server could check first.
	req, err := http.NewRequest("POST", s.URL+"/v1/functions/fn/invoke", io.MultiReader(bytes.NewReader(big(6<<20+1))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hbody, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	wantAPIError(t, hresp, hbody, 413, "RequestTooLargeException", "limit")
	evFile := filepath.Join(t.TempDir(), "big.json")
	os.WriteFile(evFile, big(6<<20+1), 0o644)
	if r := s.cli("invoke", "fn", "--data", "@"+evFile); r.Code != 1 || !strings.Contains(r.Stderr, "RequestTooLargeException") {
		t.Errorf("cli invoke with a 6 MB + 1 event: exit %d stderr %q", r.Code, r.Stderr)
	}
	resp, body = s.do("POST", "/v1/functions/fn/invoke", []byte(`{"print":"`+strings.Repeat("y", 1<<20)+`"}`), true)
	if resp.StatusCode != 200 {
		t.Fatalf("a 1 MB event: %d %s", resp.StatusCode, body[:min(len(body), 200)])
	}

	// No refused invocation reached the function: one record, the 1 MB event's.
	if n := countInvocations(t, s, "fn", resp.Header.Get("X-Amzn-Requestid")); n != 1 {
		t.Errorf("fn has %d invocation records, want 1", n)
	}
}

// TestArchiveDefaultLimits checks Lambda's default limits on a server with
// no configuration: 50 MB zipped, 250 MB unzipped.
func TestArchiveDefaultLimits(t *testing.T) {
	s := startServer(t)
	bootstrap := zipItem{name: "bootstrap", body: "#!/bin/sh\n", mode: 0o755}
	over := zipOf(t, bootstrap, zipItem{name: "blob", zeros: 50<<20 + 64<<10, store: true})
	status, body := deployAPI(t, s, "big", `{"runtime":"provided"}`, over)
	if status != 413 || !strings.Contains(string(body), "50 MB") || !strings.Contains(string(body), "RequestTooLargeException") {
		t.Errorf("deploy of a %d byte zip: %d %s", len(over), status, body)
	}
	bomb := zipOf(t, bootstrap, zipItem{name: "zeros", zeros: 250<<20 + 1})
	status, body = deployAPI(t, s, "big", `{"runtime":"provided"}`, bomb)
	if status != 413 || !strings.Contains(string(body), "250 MB") {
		t.Errorf("deploy of a zip that unzips to 250 MB + 1: %d %s", status, body)
	}
	if l := decode[[]functionJSON](t, []byte(s.mustCLI("ls", "-o", "json"))); len(l) != 0 {
		t.Errorf("refused deploys created %+v", l)
	}
}
