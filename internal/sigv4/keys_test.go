package sigv4

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

func openKeys(t *testing.T) (*Keys, *store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewKeys(KeysConfig{Table: st, SealKeyPath: filepath.Join(dir, SealKeyFile)}), st, dir
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	keys, st, dir := openKeys(t)
	seal := filepath.Join(dir, SealKeyFile)
	if _, err := os.Stat(seal); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the seal key exists before the first key: %v", err)
	}
	if _, ok, err := keys.Secret(ctx, "STRAAAAAAAAAAAAAAAAA"); ok || err != nil {
		t.Fatalf("an unknown key: %v %v", ok, err)
	}

	k, err := keys.Create(ctx, "ci runner")
	if err != nil {
		t.Fatal(err)
	}
	if !validID(k.ID) || len(k.Secret) != 40 || k.Description != "ci runner" || k.CreatedAt.IsZero() {
		t.Fatalf("created %+v", k)
	}
	fi, err := os.Stat(seal)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("seal key: %v %v", fi, err)
	}
	k2, err := keys.Create(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID == k.ID || k2.Secret == k.Secret {
		t.Fatal("two keys alike")
	}

	// A fresh Keys (a restarted server) unseals the secret.
	again := NewKeys(KeysConfig{Table: st, SealKeyPath: seal})
	if s, ok, err := again.Secret(ctx, k.ID); !ok || err != nil || s != k.Secret {
		t.Fatalf("Secret after a restart: %q %v %v", s, ok, err)
	}

	// The database holds no secret in plain text.
	for _, name := range []string{"stratus.db", "stratus.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, s := range []string{k.Secret, k2.Secret} {
			if bytes.Contains(b, []byte(s)) {
				t.Fatalf("%s holds a secret in plain text", name)
			}
		}
	}

	// Another seal key cannot unseal it.
	other := filepath.Join(t.TempDir(), SealKeyFile)
	os.WriteFile(other, bytes.Repeat([]byte{7}, 32), 0o600)
	if _, _, err := NewKeys(KeysConfig{Table: st, SealKeyPath: other}).Secret(ctx, k.ID); err == nil {
		t.Fatal("another seal key unsealed the secret")
	}

	list, err := keys.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != k.ID || list[1].ID != k2.ID || list[0].Secret != "" {
		t.Fatalf("List: %+v", list)
	}

	// Used writes the last use at most once a minute.
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	keys.Used(ctx, k.ID, t0)
	keys.Used(ctx, k.ID, t0.Add(30*time.Second))
	row, _ := st.GetAccessKey(ctx, k.ID)
	if !row.LastUsedAt.Equal(t0) {
		t.Fatalf("last used %v, want %v", row.LastUsedAt, t0)
	}
	keys.Used(ctx, k.ID, t0.Add(61*time.Second))
	row, _ = st.GetAccessKey(ctx, k.ID)
	if !row.LastUsedAt.Equal(t0.Add(61 * time.Second)) {
		t.Fatalf("last used %v, want a minute later", row.LastUsedAt)
	}

	// A Verifier on Keys forgets a deleted key at once.
	v := New(Config{Keys: keys})
	now := time.Now()
	r := signed(t, "GET", "http://127.0.0.1:1/fn/x", "", "lambda", "us-east-1", now, k.ID, k.Secret)
	if err := v.Verify(r, nil); err != nil {
		t.Fatal(err)
	}
	if err := keys.Delete(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if v.cache.len() != 0 {
		t.Fatalf("the Verifier still holds %d signing keys", v.cache.len())
	}
	if e, _ := AsError(v.Verify(r, nil)); e == nil || e.Code != CodeUnrecognizedClient {
		t.Fatalf("a deleted key: got %v", e)
	}
	if err := keys.Delete(ctx, k.ID); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}

	for _, d := range []string{strings.Repeat("x", MaxDescription+1), "a\nb", "\xff"} {
		if _, err := keys.Create(ctx, d); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("description %q: got %v, want ErrInvalid", d, err)
		}
	}
}

func TestRandomString(t *testing.T) {
	seen := map[byte]bool{}
	for range 200 {
		s, err := randomString(KeyIDPrefix, 20, idChars)
		if err != nil || !validID(s) {
			t.Fatalf("%q %v", s, err)
		}
		for i := 4; i < len(s); i++ {
			seen[s[i]] = true
		}
	}
	if len(seen) != len(idChars) {
		t.Errorf("200 IDs use %d of the %d characters", len(seen), len(idChars))
	}
}
