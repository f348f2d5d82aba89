package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/console"
)

// maxSignInBody bounds the body of POST /v1/session.
const maxSignInBody = 4 << 10

// sessionView answers /v1/session: when the session ends (absent for a
// request that came with the token).
type sessionView struct {
	ExpiresAt string `json:"expiresAt,omitempty"` // RFC 3339
}

// routeConsole serves the console and its sessions if c.Console.
func (s *Server) routeConsole(mux *http.ServeMux, c Config) {
	if !c.Console {
		return
	}
	con, err := console.New(console.Config{Log: c.Log})
	if err != nil {
		panic("apiserver.New: " + err.Error()) // a binary built without its assets
	}
	con.Route(mux)
	s.sessions = console.NewSessions(console.SessionsConfig{Store: c.Store, Token: c.Token})
	mux.HandleFunc("POST /v1/session", s.handleSignIn)
	mux.HandleFunc("GET /v1/session", s.handleSession)
	mux.HandleFunc("DELETE /v1/session", s.handleSignOut)
}

// pathPolicy is the Content-Security-Policy that the path routes add to
// their answers: the console's sandbox while the console is on.
func (s *Server) pathPolicy() string {
	if s.sessions == nil {
		return ""
	}
	return console.SandboxPolicy
}

// cookieAuth admits r by its session cookie: r must be on a /v1 route,
// carry no Authorization header (a wrong token is not made good by a
// cookie), name a live session by its first session cookie of a
// session's form (console.Sessions.Lookup: one lookup per request) and,
// to change anything, pass console.CheckSameOrigin. It returns nil if r
// is admitted, v1.ErrUnauthorized, an error wrapping
// console.ErrCrossSite, or the store's error.
func (s *Server) cookieAuth(r *http.Request) error {
	if s.sessions == nil || !strings.HasPrefix(r.URL.Path, "/v1/") || r.Header.Get("Authorization") != "" || !console.HasCookie(r) {
		return v1.ErrUnauthorized
	}
	if _, err := s.sessions.Lookup(r.Context(), r); err != nil {
		if errors.Is(err, stratus.ErrNotFound) {
			return v1.ErrUnauthorized
		}
		return err
	}
	return console.CheckSameOrigin(r)
}

// refuse answers a request that cookieAuth or CheckSameOrigin refused,
// as its error's kind says (a cross-site request: 403), and logs the
// cross-site ones.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, console.ErrCrossSite) {
		s.log.Warn("request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	}
	s.answer.Error(w, r, err)
}

// handleSignIn serves POST /v1/session: {"token": "..."} with the
// server's token makes a session and sets its cookie.
func (s *Server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	// Nothing cross-site signs a browser in, not even into the
	// operator's own server.
	if err := console.CheckSameOrigin(r); err != nil {
		s.refuse(w, r, err)
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSignInBody))
	if err := dec.Decode(&body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.answer.Error(w, r, fmt.Errorf("sign in: the body is over %d bytes: %w", maxSignInBody, stratus.ErrTooLarge))
			return
		}
		s.answer.Error(w, r, fmt.Errorf("sign in: the body must be {\"token\": \"...\"}: %w", stratus.ErrInvalid))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		s.answer.Error(w, r, fmt.Errorf("sign in: the body must be one JSON object: %w", stratus.ErrInvalid))
		return
	}
	value, expires, err := s.sessions.SignIn(r.Context(), body.Token)
	if errors.Is(err, stratus.ErrInvalid) {
		s.log.Warn("console sign-in refused: wrong token", "remote", r.RemoteAddr)
		s.answer.Error(w, r, v1.ErrUnauthorized)
		return
	}
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	s.log.Info("console sign-in", "remote", r.RemoteAddr, "expires", expires)
	http.SetCookie(w, console.Cookie(value, r.TLS != nil))
	w.Header().Set("Cache-Control", "no-store")
	s.answer.JSON(w, r, http.StatusOK, sessionView{ExpiresAt: expires.UTC().Format(time.RFC3339)})
}

// handleSession serves GET /v1/session: 200 with the session's expiry
// to a request with a live session cookie (or the token), else 401.
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.authOK(r) {
		s.answer.JSON(w, r, http.StatusOK, sessionView{})
		return
	}
	if r.Header.Get("Authorization") == "" {
		expires, err := s.sessions.Lookup(r.Context(), r)
		if err == nil {
			s.answer.JSON(w, r, http.StatusOK, sessionView{ExpiresAt: expires.UTC().Format(time.RFC3339)})
			return
		}
		if !errors.Is(err, stratus.ErrNotFound) {
			s.answer.Error(w, r, err)
			return
		}
	}
	s.answer.Error(w, r, v1.ErrUnauthorized)
}

// handleSignOut serves DELETE /v1/session: the session that the cookie
// names is deleted and the cookie cleared (204), signed in or not.
func (s *Server) handleSignOut(w http.ResponseWriter, r *http.Request) {
	if err := console.CheckSameOrigin(r); err != nil {
		s.refuse(w, r, err)
		return
	}
	if err := s.sessions.SignOut(r.Context(), r); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	http.SetCookie(w, console.ClearCookie(r.TLS != nil))
	w.WriteHeader(http.StatusNoContent)
}
