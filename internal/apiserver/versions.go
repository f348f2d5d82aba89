package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// routeVersions registers the routes of published versions and aliases
// on mux. Invoking a qualified name (NAME:1, NAME:ALIAS) is the gateway's.
func (s *Server) routeVersions(mux *http.ServeMux) {
	auth := s.requireToken
	mux.Handle("POST /v1/functions/{name}/publish", auth(http.HandlerFunc(s.handlePublish)))
	mux.Handle("GET /v1/functions/{name}/versions", auth(http.HandlerFunc(s.handleVersions)))
	mux.Handle("DELETE /v1/functions/{name}/versions/{n}", auth(http.HandlerFunc(s.handleDeleteVersion)))
	mux.Handle("GET /v1/functions/{name}/aliases", auth(http.HandlerFunc(s.handleAliases)))
	mux.Handle("PUT /v1/functions/{name}/aliases/{alias}", auth(http.HandlerFunc(s.handlePutAlias)))
	mux.Handle("GET /v1/functions/{name}/aliases/{alias}", auth(http.HandlerFunc(s.handleGetAlias)))
	mux.Handle("DELETE /v1/functions/{name}/aliases/{alias}", auth(http.HandlerFunc(s.handleDeleteAlias)))
}

// versionView shows published version v (or a $LATEST snapshot, Number 0).
func versionView(v *stratus.Version) v1.Version {
	out := v1.Version{
		Function: v.Function, Version: stratus.LatestVersion, Snapshot: v.Version, Description: v.Description,
		Config: v.Config, CodeSHA: v.CodeSHA, CodeSize: v.CodeSize, CreatedAt: v.CreatedAt,
	}
	if v.Number > 0 {
		out.Version = strconv.Itoa(v.Number)
	}
	return out
}

// latestView shows function f's $LATEST.
func latestView(f *stratus.Function) v1.Version {
	return v1.Version{
		Function: f.Name, Version: stratus.LatestVersion, Snapshot: f.Version, Description: f.Config.Description,
		Config: f.Config, CodeSHA: f.CodeSHA, CodeSize: f.CodeSize, CreatedAt: f.UpdatedAt,
	}
}

// handlePublish makes a numbered version of the function's $LATEST: 201
// with it, or 200 with the newest published version when $LATEST has
// not changed since.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var spec v1.PublishSpec
	if r.ContentLength != 0 {
		if err := decodeSpec(w, r, maxSpecBody, "publish", &spec); err != nil {
			s.answer.Error(w, r, err)
			return
		}
	}
	before, err := s.fns.PublishedVersions(r.Context(), name)
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	v, err := s.fns.Publish(r.Context(), name, spec.Description)
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	status := http.StatusOK
	if len(before) == 0 || v.Number > before[len(before)-1].Number {
		status = http.StatusCreated
		s.log.Info("published", "fn", name, "version", v.Number, "snapshot", v.Version)
	}
	s.answer.JSON(w, r, status, versionView(v))
}

// handleVersions lists a function's $LATEST, then its published
// versions, oldest first.
func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	f, err := s.fns.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	vs, err := s.fns.PublishedVersions(r.Context(), f.Name)
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	out := v1.VersionList{Versions: make([]v1.Version, 0, len(vs)+1)}
	out.Versions = append(out.Versions, latestView(f))
	for i := range vs {
		out.Versions = append(out.Versions, versionView(&vs[i]))
	}
	s.answer.JSON(w, r, http.StatusOK, out)
}

// versionNumber reads the {n} of a version's path.
func versionNumber(r *http.Request) (int, error) {
	q := r.PathValue("n")
	n, ok := stratus.FunctionRef{Qualifier: q}.Version()
	if !ok {
		if q == stratus.LatestVersion {
			return 0, fmt.Errorf("version %s cannot be deleted; remove the function instead: %w", q, stratus.ErrInvalid)
		}
		return 0, fmt.Errorf("version %q: want a published version's number (1, 2, ...): %w", q, stratus.ErrInvalid)
	}
	return n, nil
}

// handleDeleteVersion deletes a published version: 204, or 409 while an
// alias points at it.
func (s *Server) handleDeleteVersion(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	n, err := versionNumber(r)
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	if err := s.fns.DeleteVersion(r.Context(), name, n); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	s.log.Info("version deleted", "fn", name, "version", n)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleAliases(w http.ResponseWriter, r *http.Request) {
	as, err := s.fns.Aliases(r.Context(), r.PathValue("name"))
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	if as == nil {
		as = []stratus.Alias{}
	}
	s.answer.JSON(w, r, http.StatusOK, v1.AliasList{Aliases: as})
}

func (s *Server) handleGetAlias(w http.ResponseWriter, r *http.Request) {
	a, err := s.fns.Alias(r.Context(), r.PathValue("name"), r.PathValue("alias"))
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	s.answer.JSON(w, r, http.StatusOK, a)
}

// handlePutAlias creates an alias (201) or replaces it (200).
func (s *Server) handlePutAlias(w http.ResponseWriter, r *http.Request) {
	name, alias := r.PathValue("name"), r.PathValue("alias")
	var spec v1.AliasSpec
	if err := decodeSpec(w, r, maxSpecBody, "alias", &spec); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	a := stratus.Alias{Function: name, Name: alias, Version: spec.Version, Weights: spec.Weights, Description: spec.Description}
	if err := a.Validate(); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	_, err := s.fns.Alias(r.Context(), name, alias)
	create := errors.Is(err, stratus.ErrNotFound)
	if err != nil && !create {
		s.answer.Error(w, r, err)
		return
	}
	if create {
		// The function must exist: its absence is its own error.
		if _, err := s.fns.Get(r.Context(), name); err != nil {
			s.answer.Error(w, r, err)
			return
		}
	}
	out, err := s.fns.PutAlias(r.Context(), a, create, spec.RevisionID)
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	s.log.Info("alias set", "fn", name, "alias", alias, "version", out.Version, "weights", out.Weights)
	s.answer.JSON(w, r, status, out)
}

func (s *Server) handleDeleteAlias(w http.ResponseWriter, r *http.Request) {
	name, alias := r.PathValue("name"), r.PathValue("alias")
	if err := s.fns.DeleteAlias(r.Context(), name, alias); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	s.log.Info("alias deleted", "fn", name, "alias", alias)
	w.WriteHeader(http.StatusNoContent)
}

// checkTarget checks fn, the function a schedule or a subscription
// invokes: "NAME" or "NAME:QUALIFIER" (or an ARN), whose function and
// qualifier exist (the events check a function's existence; this checks
// the qualifier's). It returns fn as the events take it: NAME for
// $LATEST, else NAME:QUALIFIER. Without functions it only reads fn.
func (s *Server) checkTarget(fn string) (string, error) {
	if !strings.Contains(fn, ":") {
		return fn, nil // a plain name: the events check it
	}
	ref, err := stratus.ParseFunctionRef(fn)
	if err != nil {
		return "", err
	}
	if ref.Latest() {
		// The events check that the function exists.
		return ref.Name, nil
	}
	if s.fns != nil {
		if _, err := s.fns.Resolve(ref); err != nil {
			return "", err
		}
	}
	return ref.String(), nil
}
