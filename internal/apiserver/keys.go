package apiserver

import (
	"context"
	"net/http"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/sigv4"
)

// keyRing creates, lists and removes the access keys of the Lambda API;
// *sigv4.Keys is one. Delete returns an error wrapping stratus.ErrNotFound
// for an unknown key; Create one wrapping stratus.ErrInvalid for a bad
// description.
type keyRing interface {
	Create(ctx context.Context, description string) (*sigv4.Key, error)
	List(ctx context.Context) ([]sigv4.Key, error)
	Delete(ctx context.Context, id string) error
}

// KeysConfig serves /v1/keys and checks SigV4 on the signed function
// routes.
type KeysConfig struct {
	// Keys serves POST, GET /v1/keys and DELETE /v1/keys/{id}; nil leaves
	// the routes out.
	Keys keyRing
	// Verify checks a request's SigV4 signature over its body (see
	// sigv4.Verifier.Verify); the function routes deployed with auth
	// "signed" admit what it admits. Nil: they admit the token only.
	Verify func(r *http.Request, body []byte) error
	// Precheck makes Verify's checks that need no body (see
	// sigv4.Verifier.Precheck), so that those routes refuse a request
	// before they read its body. Nil: the body is read first.
	Precheck func(r *http.Request) error
}

// keyRoutes serves /v1/keys.
type keyRoutes struct {
	s    *Server
	keys keyRing
}

// routeKeys registers the access key routes on mux; a nil Keys leaves
// them out.
func (s *Server) routeKeys(mux *http.ServeMux, c KeysConfig) {
	if c.Keys == nil {
		return
	}
	k := &keyRoutes{s: s, keys: c.Keys}
	auth := s.requireToken
	mux.Handle("POST /v1/keys", auth(http.HandlerFunc(k.create)))
	mux.Handle("GET /v1/keys", auth(http.HandlerFunc(k.list)))
	mux.Handle("DELETE /v1/keys/{id}", auth(http.HandlerFunc(k.remove)))
}

func (k *keyRoutes) create(w http.ResponseWriter, r *http.Request) {
	var spec v1.AccessKeySpec
	if err := decodeSpec(w, r, maxSpecBody, "access key", &spec); err != nil {
		k.s.answer.Error(w, r, err)
		return
	}
	key, err := k.keys.Create(r.Context(), spec.Description)
	if err != nil {
		k.s.answer.Error(w, r, err)
		return
	}
	k.s.log.Info("access key created", "key", key.ID)
	out := wireKey(*key)
	out.SecretAccessKey = key.Secret
	k.s.answer.JSON(w, r, http.StatusCreated, out)
}

func (k *keyRoutes) list(w http.ResponseWriter, r *http.Request) {
	keys, err := k.keys.List(r.Context())
	if err != nil {
		k.s.answer.Error(w, r, err)
		return
	}
	out := v1.AccessKeyList{Keys: make([]v1.AccessKey, 0, len(keys))}
	for _, key := range keys {
		out.Keys = append(out.Keys, wireKey(key))
	}
	k.s.answer.JSON(w, r, http.StatusOK, out)
}

func (k *keyRoutes) remove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := k.keys.Delete(r.Context(), id); err != nil {
		k.s.answer.Error(w, r, err)
		return
	}
	k.s.log.Info("access key removed", "key", id)
	w.WriteHeader(http.StatusNoContent)
}

// wireKey is key as the API shows it, without its secret.
func wireKey(key sigv4.Key) v1.AccessKey {
	out := v1.AccessKey{AccessKeyID: key.ID, Description: key.Description, CreatedAt: key.CreatedAt}
	if !key.LastUsedAt.IsZero() {
		t := key.LastUsedAt
		out.LastUsedAt = &t
	}
	return out
}
