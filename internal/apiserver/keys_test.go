package apiserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/sigv4"
	"github.com/stratus-run/stratus/internal/store"
)

func TestKeyRoutes(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(t.Context(), filepath.Join(dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys := sigv4.NewKeys(sigv4.KeysConfig{Table: st, SealKeyPath: filepath.Join(dir, sigv4.SealKeyFile)})
	srv := httptest.NewServer(New(Config{Token: "tok", Keys: KeysConfig{Keys: keys}}))
	defer srv.Close()

	call := func(method, path, body, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := call("POST", "/v1/keys", `{"description":"ci runner"}`, "tok")
	var k v1.AccessKey
	if code != 201 || json.Unmarshal([]byte(body), &k) != nil {
		t.Fatalf("create: %d %s", code, body)
	}
	if len(k.AccessKeyID) != 20 || !strings.HasPrefix(k.AccessKeyID, sigv4.KeyIDPrefix) || len(k.SecretAccessKey) != 40 ||
		k.Description != "ci runner" || k.CreatedAt.IsZero() || k.LastUsedAt != nil {
		t.Fatalf("created %+v", k)
	}
	if s, ok, err := keys.Secret(t.Context(), k.AccessKeyID); !ok || err != nil || s != k.SecretAccessKey {
		t.Fatalf("the server's secret: %q %v %v", s, ok, err)
	}

	code, body = call("GET", "/v1/keys", "", "tok")
	if code != 200 || strings.Contains(body, k.SecretAccessKey) || strings.Contains(body, "secretAccessKey") {
		t.Fatalf("list: %d %s", code, body)
	}
	var l v1.AccessKeyList
	if err := json.Unmarshal([]byte(body), &l); err != nil || len(l.Keys) != 1 || l.Keys[0].AccessKeyID != k.AccessKeyID {
		t.Fatalf("list: %s", body)
	}

	for _, tc := range []struct {
		name, method, path, body, token string
		code                            int
		want                            string
	}{
		{"no token", "POST", "/v1/keys", `{}`, "", 401, ""},
		{"wrong token", "GET", "/v1/keys", "", "nope", 401, ""},
		{"not JSON", "POST", "/v1/keys", `description=x`, "tok", 400, "want a JSON object"},
		{"unknown field", "POST", "/v1/keys", `{"secret":"mine"}`, "tok", 400, "unknown field"},
		{"long description", "POST", "/v1/keys", `{"description":"` + strings.Repeat("x", 300) + `"}`, "tok", 400, "more than 256"},
		{"unknown key", "DELETE", "/v1/keys/STRANOSUCHKEY0000000", "", "tok", 404, "not found"},
	} {
		code, body := call(tc.method, tc.path, tc.body, tc.token)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, code, body, tc.code, tc.want)
		}
	}
	// Nothing of the refused requests was kept.
	if _, body := call("GET", "/v1/keys", "", "tok"); strings.Count(body, "accessKeyId") != 1 {
		t.Fatalf("after the refused requests: %s", body)
	}

	if code, body := call("DELETE", "/v1/keys/"+k.AccessKeyID, "", "tok"); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if _, ok, _ := keys.Secret(t.Context(), k.AccessKeyID); ok {
		t.Fatal("the removed key still has a secret")
	}
	if code, body := call("DELETE", "/v1/keys/"+k.AccessKeyID, "", "tok"); code != 404 {
		t.Fatalf("delete twice: %d %s", code, body)
	}
}
