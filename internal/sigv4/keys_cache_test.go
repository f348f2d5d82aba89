package sigv4

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/store"
)

// pausedTable is a store whose first GetAccessKey, once it has read the
// row, tells read and waits for resume: a Secret caught between reading
// a key and caching it.
type pausedTable struct {
	*store.Store
	once   sync.Once
	read   chan struct{}
	resume chan struct{}
}

func (p *pausedTable) GetAccessKey(ctx context.Context, id string) (*store.AccessKey, error) {
	row, err := p.Store.GetAccessKey(ctx, id)
	p.once.Do(func() {
		close(p.read)
		<-p.resume
	})
	return row, err
}

// TestKeysDeleteDuringSecret: a Delete that runs while a Secret of the
// same key is between reading the row and caching it leaves nothing
// cached: the removed key is refused from then on.
func TestKeysDeleteDuringSecret(t *testing.T) {
	ctx := context.Background()
	_, st, dir := openKeys(t)
	table := &pausedTable{Store: st, read: make(chan struct{}), resume: make(chan struct{})}
	keys := NewKeys(KeysConfig{Table: table, SealKeyPath: filepath.Join(dir, SealKeyFile)})
	k, err := keys.Create(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := keys.Secret(ctx, k.ID)
		done <- err
	}()
	<-table.read
	if err := keys.Delete(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	close(table.resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok, err := keys.Secret(ctx, k.ID); ok || err != nil {
		t.Fatalf("Secret of a deleted key after a concurrent read: ok %v, err %v; want refused", ok, err)
	}
}

// TestKeysSecretTTL: a key removed from the store by another server
// sharing it stops working here once its cached secret is SecretTTL old.
func TestKeysSecretTTL(t *testing.T) {
	ctx := context.Background()
	_, st, dir := openKeys(t)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	keys := NewKeys(KeysConfig{Table: st, SealKeyPath: filepath.Join(dir, SealKeyFile), Now: func() time.Time { return now }})
	k, err := keys.Create(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := keys.Secret(ctx, k.ID); !ok || err != nil {
		t.Fatalf("Secret: %v %v", ok, err)
	}
	// Another server removes the key.
	if err := st.DeleteAccessKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(SecretTTL - time.Second)
	if _, ok, err := keys.Secret(ctx, k.ID); !ok || err != nil {
		t.Fatalf("Secret within the TTL: %v %v, want the cached secret", ok, err)
	}
	now = now.Add(2 * time.Second)
	if _, ok, err := keys.Secret(ctx, k.ID); ok || err != nil {
		t.Fatalf("Secret of a key removed elsewhere, after the TTL: ok %v, err %v; want refused", ok, err)
	}
}
