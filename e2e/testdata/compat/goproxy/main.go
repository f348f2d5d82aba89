// Command goproxy is the chi app of the compatibility suite
// (e2e/compat_test.go). Without flags it is a Lambda function (a
// provided.al2023 bootstrap) that serves the app through
// aws-lambda-go-api-proxy's chi adapter on the HTTP event of payload format
// 2.0; with -listen it serves the same app directly on net/http and prints
// "listening on PORT".
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	chiadapter "github.com/awslabs/aws-lambda-go-api-proxy/chi"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

const line = "the quick brown fox jumps over the lazy dog 0123456789\n"

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func cookies(r *http.Request) []string {
	out := []string{}
	for _, c := range r.Cookies() {
		out = append(out, c.Name+"="+c.Value)
	}
	return out
}

// query keeps every value of a repeated key, in order.
func query(r *http.Request) map[string][]string {
	out := map[string][]string{}
	for kv := range strings.SplitSeq(r.URL.RawQuery, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		out[k] = append(out[k], v)
	}
	return out
}

func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("X-Multi", "one")
	w.Header().Add("X-Multi", "two")
	w.Header().Set("X-App", "chi")
	writeJSON(w, 200, map[string]any{
		"method": r.Method, "path": r.URL.EscapedPath(), "decoded": r.URL.Path,
		"query": query(r), "cookies": cookies(r),
	})
}

func router() *chi.Mux {
	r := chi.NewRouter()
	r.Use(middleware.GetHead) // HEAD runs the GET handler
	r.Get("/echo", echo)
	r.Get("/echo/*", echo)
	r.Get("/users/{id}/items/{item}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"id": chi.URLParam(r, "id"), "item": chi.URLParam(r, "item")})
	})
	r.Get("/cookies", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "abc123", Path: "/", HttpOnly: true})
		w.Header().Add("Set-Cookie", "theme=dark; Path=/; Expires=Tue, 01 Jan 2030 00:00:00 GMT")
		w.Header().Add("Set-Cookie", "plain=1")
		writeJSON(w, 200, map[string]any{"cookies": cookies(r)})
	})
	r.Post("/binary", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
		_, _ = w.Write(b)
	})
	r.Post("/json", func(w http.ResponseWriter, r *http.Request) {
		var got map[string]any
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			writeJSON(w, 400, map[string]string{"error": "bad json"})
			return
		}
		writeJSON(w, 201, map[string]any{"got": got, "keys": len(got)})
	})
	r.Get("/large", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		n = min(max(n, 0), 4<<20)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, strings.Repeat(line, n/len(line)+1)[:n])
	})
	r.Get("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	r.Get("/redirect-prefixed", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.Header.Get("X-Forwarded-Prefix")+"/elsewhere", http.StatusFound)
	})
	r.Get("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "elsewhere\n")
	})
	r.Get("/error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "conflict here", http.StatusConflict)
	})
	return r
}

func main() {
	listen := flag.String("listen", "", "serve directly on this address instead of as a Lambda function")
	flag.Parse()
	r := router()
	if *listen == "" {
		lambda.Start(chiadapter.NewV2(r).ProxyWithContextV2)
		return
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %d\n", ln.Addr().(*net.TCPAddr).Port)
	if err := http.Serve(ln, r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
