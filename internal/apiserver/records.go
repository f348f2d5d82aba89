package apiserver

// The readers of what functions left behind: invocation records and log
// lines (stored, or followed as they are written).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/store"
)

func parseSince(q string) (time.Time, error) {
	if q == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(q); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, q)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want a duration (10m) or an RFC 3339 time: %w", q, stratus.ErrInvalid)
	}
	return t, nil
}

func parseInt(q, what string) (int64, error) {
	if q == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(q, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: want a non-negative number: %w", what, q, stratus.ErrInvalid)
	}
	return n, nil
}

func (s *Server) handleInvocations(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	since, err := parseSince(q.Get("since"))
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	limit, err := parseInt(q.Get("limit"), "limit")
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	if _, ok := s.fns.Head(name); !ok {
		s.answer.Error(w, r, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound))
		return
	}
	// Read your writes: what finished before this request is listed.
	_ = s.logs.Sync(r.Context())
	recs, err := s.st.ListInvocations(r.Context(), name, store.InvocationQuery{RequestID: q.Get("request"), Since: since, Limit: int(limit)})
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	s.answer.JSON(w, r, http.StatusOK, v1.InvocationList{Invocations: records(s.meter, recs)})
}

// handleLogs answers a function's log lines: those of all its versions,
// or, for NAME:QUALIFIER, those of the instances that ran that version (an
// alias's: the version it points at).
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ref, err := stratus.ParseFunctionRef(name)
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	v, ok := s.fns.Head(name)
	if !ok {
		s.answer.Error(w, r, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound))
		return
	}
	version := ""
	if ref.Qualifier != "" {
		version = v.RunsAs()
	}
	s.serveLogs(w, r, ref.Name, version)
}

// serveLogs answers the log lines kept under key (a function's name or a
// service's log key) for the query of r, of the instances that ran
// version when it is set.
// With follow=true it streams them as JSON lines and keeps streaming new
// ones until the client leaves or the server stops.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request, key, version string) {
	q := r.URL.Query()
	since, err := parseSince(q.Get("since"))
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	after, err := parseInt(q.Get("after"), "after")
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	limit, err := parseInt(q.Get("limit"), "limit")
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	lq := store.LogQuery{RequestID: q.Get("request"), Since: since, AfterID: after, Limit: int(limit), Qualifier: version}
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	// Read your writes: what was printed before this request is listed.
	_ = s.logs.Sync(r.Context())
	if !follow {
		lines, err := s.st.ListLogs(r.Context(), key, lq)
		if err != nil {
			s.answer.Error(w, r, err)
			return
		}
		if lines == nil {
			lines = []stratus.LogLine{}
		}
		s.answer.JSON(w, r, http.StatusOK, v1.LogList{Lines: lines})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	for {
		// Take the flush signal before reading, so no batch is missed.
		flushed := s.logs.Flushed()
		lines, err := s.st.ListLogs(r.Context(), key, lq)
		if err != nil {
			// The status has gone: the stream just ends, logged unless
			// the client left.
			if r.Context().Err() == nil {
				s.answer.Status(w, r, fmt.Errorf("follow logs of %q: %w", key, err))
			}
			return
		}
		for i := range lines {
			if enc.Encode(&lines[i]) != nil {
				return
			}
			lq.AfterID = lines[i].ID
		}
		if len(lines) > 0 {
			if rc.Flush() != nil {
				return
			}
		}
		if len(lines) == 1000 || (lq.Limit > 0 && len(lines) == lq.Limit) {
			continue
		}
		select {
		case <-flushed:
		case <-r.Context().Done():
			return
		case <-s.stopping:
			return
		}
	}
}
