package functions

import (
	"errors"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// A function URL sets the function's auth mode (a new $LATEST only when
// it changes) and gives it back to the token when removed; a failed
// create leaves no URL behind.
func TestFunctionURLAuth(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	s := e.open(t)
	if _, err := s.PutURL(ctx, store.FunctionURL{Function: "none", InvokeMode: "BUFFERED"}, stratus.AuthNone, true); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("URL of a missing function: %v, want ErrNotFound", err)
	}
	f := deploy(t, s, "fn", codeZip(t, "hi"))
	head := func() *stratus.Version {
		t.Helper()
		v, ok := s.Head("fn")
		if !ok {
			t.Fatal("no head")
		}
		return v
	}
	if _, err := s.PutURL(ctx, store.FunctionURL{Function: "fn"}, "public", true); !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("bad auth: %v, want ErrInvalid", err)
	}
	if _, err := s.URL(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("a refused create left a URL: %v", err)
	}
	u, err := s.PutURL(ctx, store.FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, stratus.AuthNone, true)
	if err != nil {
		t.Fatal(err)
	}
	if u.CreatedAt.IsZero() {
		t.Error("no creation time")
	}
	if v := head(); v.Config.Auth != stratus.AuthNone || v.Version != f.Version+1 || v.CodeSHA != f.CodeSHA {
		t.Errorf("after the URL: head %d auth %q, want %d %q with the same code", v.Version, v.Config.Auth, f.Version+1, stratus.AuthNone)
	}
	if _, err := s.PutURL(ctx, store.FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, stratus.AuthSigned, true); !errors.Is(err, stratus.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	if head().Config.Auth != stratus.AuthNone {
		t.Error("a refused create changed the auth")
	}
	// The same auth again: no new snapshot.
	before := head().Version
	if _, err := s.PutURL(ctx, store.FunctionURL{Function: "fn", Cors: `{"MaxAge":5}`, InvokeMode: "BUFFERED"}, stratus.AuthNone, false); err != nil {
		t.Fatal(err)
	}
	if head().Version != before {
		t.Error("an update that kept the auth made a new $LATEST")
	}
	if _, err := s.PutURL(ctx, store.FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, stratus.AuthSigned, false); err != nil {
		t.Fatal(err)
	}
	if head().Config.Auth != stratus.AuthSigned {
		t.Errorf("auth %q after the update, want %q", head().Config.Auth, stratus.AuthSigned)
	}
	if err := s.DeleteURL(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if head().Config.Auth != stratus.AuthToken {
		t.Errorf("auth %q after the URL's removal, want %q", head().Config.Auth, stratus.AuthToken)
	}
	if err := s.DeleteURL(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.PutURL(ctx, store.FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, "", false); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("update without a URL: %v, want ErrNotFound", err)
	}
}
