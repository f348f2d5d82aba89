package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stratus-run/stratus"
)

func putService(ctx context.Context, s *Store, name string, number int) error {
	_, err := s.PutRevision(ctx, &stratus.Revision{Service: name, Number: number, Config: stratus.ServiceConfig{Image: "app"}, Digest: "sha256:app"})
	return err
}

// wantConflict fails unless err wraps stratus.ErrConflict and says who
// holds the name.
func wantConflict(t *testing.T, what string, err error, holder string) {
	t.Helper()
	if !errors.Is(err, stratus.ErrConflict) || !strings.Contains(err.Error(), "a "+holder+" has that name") {
		t.Errorf("%s: got %v, want a conflict with a %s", what, err, holder)
	}
}

func TestNamesOneKindAtATime(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)

	if _, err := s.PutVersion(ctx, "fn", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	wantConflict(t, "claim a function's name", s.ClaimServiceName(ctx, "fn"), "function")
	wantConflict(t, "store a service under a function's name", putService(ctx, s, "fn", 1), "function")

	if err := s.ClaimServiceName(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	// The claim holds while no revision is stored yet.
	_, err := s.PutVersion(ctx, "svc", testConfig(128), "sha", 1)
	wantConflict(t, "deploy a function under a claimed name", err, "service")
	if err := s.ClaimServiceName(ctx, "svc"); err != nil {
		t.Errorf("claim again: %v", err)
	}
	if err := putService(ctx, s, "svc", 1); err != nil {
		t.Fatal(err)
	}
	// Stored: a release of a failed later deploy keeps the name.
	if err := s.ReleaseServiceName(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	_, err = s.PutVersion(ctx, "svc", testConfig(128), "sha", 1)
	wantConflict(t, "deploy a function under a stored service's name", err, "service")

	// Removing frees the name for the other kind.
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if kind, ok, err := s.NameHolder(ctx, "fn"); ok || err != nil {
		t.Errorf("NameHolder of a removed function's name: %q, %v, %v; want free", kind, ok, err)
	}
	if err := s.ClaimServiceName(ctx, "fn"); err != nil {
		t.Errorf("claim a removed function's name: %v", err)
	}
	if err := s.DeleteService(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutVersion(ctx, "svc", testConfig(128), "sha", 1); err != nil {
		t.Errorf("deploy a function under a removed service's name: %v", err)
	}
}

func TestReleaseServiceName(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	if err := s.ClaimServiceName(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := s.ReleaseServiceName(ctx, "web"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutVersion(ctx, "web", testConfig(128), "sha", 1); err != nil {
		t.Errorf("deploy a function under a released name: %v", err)
	}
	// Releasing a service's name never frees a function's.
	if err := s.ReleaseServiceName(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	wantConflict(t, "claim after a release of another kind", s.ClaimServiceName(ctx, "web"), "function")
}

// A claim whose deploy never finished (the server stopped while the
// replicas started) is dropped when the store opens again.
func TestOpenDropsUnfinishedClaims(t *testing.T) {
	ctx := t.Context()
	s, path := openFile(t, "on PostgreSQL other servers may be deploying under their claims: Open drops none")
	for _, name := range []string{"pending", "stored"} {
		if err := s.ClaimServiceName(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := putService(ctx, s, "stored", 1); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openAt(t, path)
	if _, err := s.PutVersion(ctx, "pending", testConfig(128), "sha", 1); err != nil {
		t.Errorf("deploy a function under an unfinished claim: %v", err)
	}
	_, err := s.PutVersion(ctx, "stored", testConfig(128), "sha", 1)
	wantConflict(t, "deploy a function under a stored service's name", err, "service")
}

// A data dir from before the registry: its functions and services hold
// their names once it is opened.
func TestMigrationFillsNames(t *testing.T) {
	ctx := t.Context()
	// A database of schema 5, with a name both a function and a service
	// have.
	db, path := createAtVersion(t, 5)
	for _, q := range []string{
		`INSERT INTO functions (name, head, created_at, updated_at) VALUES ('fn', 1, 1, 1)`,
		`INSERT INTO versions (function, version, config, code_sha, code_size, created_at) VALUES ('fn', 1, '{"runtime":"provided"}', 'sha', 1, 1)`,
		`INSERT INTO services (name, serving, created_at, updated_at) VALUES ('svc', 1, 1, 1)`,
		`INSERT INTO revisions (service, number, config, image_digest, created_at) VALUES ('svc', 1, '{"image":"app"}', 'sha256:app', 1)`,
		`INSERT INTO services (name, serving, created_at, updated_at) VALUES ('fn', 1, 1, 1)`,
		`INSERT INTO revisions (service, number, config, image_digest, created_at) VALUES ('fn', 1, '{"image":"app"}', 'sha256:app', 1)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openAt(t, path)
	wantConflict(t, "claim a migrated function's name", s.ClaimServiceName(ctx, "fn"), "function")
	_, err := s.PutVersion(ctx, "svc", testConfig(128), "sha", 1)
	wantConflict(t, "deploy a function under a migrated service's name", err, "service")
	wantHolder(t, s, "fn", KindFunction)
	// The function kept the shared name; removing it hands the name to
	// the service still stored (and served) under it: no function may
	// take it then, also after a restart, and the service deploys.
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	wantHolder(t, s, "fn", KindService)
	_, err = s.PutVersion(ctx, "fn", testConfig(128), "sha", 1)
	wantConflict(t, "deploy a function under the name the removed function shared", err, "service")
	s = reopen(t, s)
	wantHolder(t, s, "fn", KindService)
	if err := putService(ctx, s, "fn", 2); err != nil {
		t.Errorf("deploy the service once the function is removed: %v", err)
	}
}

// wantHolder fails unless kind holds name.
func wantHolder(t *testing.T, s *Store, name, kind string) {
	t.Helper()
	got, ok, err := s.NameHolder(t.Context(), name)
	if err != nil || !ok || got != kind {
		t.Errorf("NameHolder(%q) = %q, %v, %v; want %q", name, got, ok, err, kind)
	}
}

// Many deploys of one new name, half as a function, half as a service:
// exactly one kind gets it.
func TestNamesConcurrentClaims(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Go(func() {
			_, errs[2*i] = s.PutVersion(ctx, "both", testConfig(128), "sha", 1)
		})
		wg.Go(func() { errs[2*i+1] = s.ClaimServiceName(ctx, "both") })
	}
	wg.Wait()
	var fnOK, svcOK int
	for i, err := range errs {
		switch {
		case err == nil && i%2 == 0:
			fnOK++
		case err == nil:
			svcOK++
		case !errors.Is(err, stratus.ErrConflict):
			t.Errorf("deploy %d: %v", i, err)
		}
	}
	if (fnOK == 0) == (svcOK == 0) {
		t.Errorf("%d function deploys and %d service claims succeeded: want only one kind", fnOK, svcOK)
	}
}
