package sigv4

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// SealKeyFile is the name, in the data dir, of the file that holds the
// 32-byte AES-256 key sealing the secret access keys (mode 0600, made when
// the first key is created). Without it the stored keys cannot be used:
// back it up with the database.
const SealKeyFile = "access-keys.key"

// KeyIDPrefix starts every access key ID Stratus makes. AWS's own long-term
// keys start with AKIA; a different prefix lets people and secret scanners
// tell a Stratus key from an AWS one.
const KeyIDPrefix = "STRA"

// MaxDescription bounds an access key's description, in characters.
const MaxDescription = 256

// keyTable is where Keys keeps the access keys (the store).
type keyTable interface {
	CreateAccessKey(ctx context.Context, k store.AccessKey) error
	GetAccessKey(ctx context.Context, id string) (*store.AccessKey, error)
	ListAccessKeys(ctx context.Context) ([]store.AccessKey, error)
	DeleteAccessKey(ctx context.Context, id string) error
	TouchAccessKey(ctx context.Context, id string, t time.Time) error
}

// KeysConfig configures Keys. Table and SealKeyPath are required.
type KeysConfig struct {
	// Table keeps the keys with their secrets sealed. Required.
	Table keyTable
	// SealKeyPath is the file of the sealing key (DATA/SealKeyFile).
	// Required.
	SealKeyPath string
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Log gets failures to record a key's last use; nil discards them.
	Log *slog.Logger
}

// Key is an access key as Keys hands it out. Secret is set only by
// Create.
type Key struct {
	ID          string
	Secret      string
	Description string
	CreatedAt   time.Time
	LastUsedAt  time.Time // zero before its first use
}

// Keys creates, lists and removes the server's access keys and finds their
// secrets for a Verifier (it is a KeyStore). Each secret is stored sealed
// with AES-256-GCM (the key ID as additional data) under the key in
// SealKeyPath. Unsealed secrets are kept in memory once used (bounded,
// each for SecretTTL); Delete drops them and tells the Verifiers built on
// Keys to forget the key, so a key removed through this Keys is refused at
// once, and one removed by another server sharing the store within
// SecretTTL. Keys is safe for concurrent use.
type Keys struct {
	table   keyTable
	path    string
	now     func() time.Time
	log     *slog.Logger
	deleted []func(id string) // Verifier.Forget of the Verifiers on Keys

	mu      sync.Mutex
	aead    cipher.AEAD             // nil until the seal key is loaded
	secrets map[string]cachedSecret // unsealed secrets by key ID
	touched map[string]time.Time    // when each key's last use was written
	// deletes counts Deletes: a Secret that read a row while a Delete
	// ran does not cache it.
	deletes uint64
}

// cachedSecret is an unsealed secret and when it was read.
type cachedSecret struct {
	secret string
	read   time.Time
}

// SecretTTL is how long an unsealed secret is used without reading its
// key again: how long a key removed by another server sharing the store
// keeps working here.
const SecretTTL = time.Minute

// touchEvery is how often a key's last use is written down at most.
const touchEvery = time.Minute

// maxCachedSecrets bounds Keys' unsealed secrets.
const maxCachedSecrets = 4096

// NewKeys returns Keys. It panics when a required field is missing (a
// wiring bug). It reads no file: the seal key is loaded at first use.
func NewKeys(cfg KeysConfig) *Keys {
	if cfg.Table == nil || cfg.SealKeyPath == "" {
		panic("sigv4.NewKeys: Config.Table or Config.SealKeyPath is missing")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Keys{table: cfg.Table, path: cfg.SealKeyPath, now: cfg.Now, log: cfg.Log,
		secrets: make(map[string]cachedSecret), touched: make(map[string]time.Time)}
}

// onDelete registers f to be called with each deleted key's ID. New calls
// it for a Verifier built on Keys; it is not safe to call concurrently
// with Delete.
func (k *Keys) onDelete(f func(id string)) { k.deleted = append(k.deleted, f) }

// Create makes a new access key with a description and returns it with its
// secret (the only time the secret is shown). A description that is too
// long or holds control characters is an error wrapping
// stratus.ErrInvalid. It creates the seal key file if there is none.
func (k *Keys) Create(ctx context.Context, description string) (*Key, error) {
	if err := validDescription(description); err != nil {
		return nil, err
	}
	aead, err := k.sealer(true)
	if err != nil {
		return nil, fmt.Errorf("create access key: %w", err)
	}
	key := Key{Description: description, CreatedAt: k.now().UTC().Truncate(time.Millisecond)}
	if key.ID, err = randomString(KeyIDPrefix, 20, idChars); err != nil {
		return nil, fmt.Errorf("create access key: %w", err)
	}
	if key.Secret, err = randomString("", 40, secretChars); err != nil {
		return nil, fmt.Errorf("create access key: %w", err)
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(key.Secret)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("create access key: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(key.Secret), []byte(key.ID))
	if err := k.table.CreateAccessKey(ctx, store.AccessKey{ID: key.ID, Sealed: sealed, Description: description, CreatedAt: key.CreatedAt}); err != nil {
		return nil, err
	}
	return &key, nil
}

// List returns every access key, oldest first, without secrets.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	rows, err := k.table.ListAccessKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Key, len(rows))
	for i, r := range rows {
		out[i] = Key{ID: r.ID, Description: r.Description, CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt}
	}
	return out, nil
}

// Delete removes access key id, or returns an error wrapping
// stratus.ErrNotFound. From its return on, requests signed with the key
// are refused.
func (k *Keys) Delete(ctx context.Context, id string) error {
	err := k.table.DeleteAccessKey(ctx, id)
	// Forgotten even on an error: a key that may be gone must not stay
	// usable from memory.
	k.mu.Lock()
	k.deletes++
	delete(k.secrets, id)
	delete(k.touched, id)
	k.mu.Unlock()
	for _, f := range k.deleted {
		f(id)
	}
	return err
}

// Secret returns the secret of access key id (KeyStore).
func (k *Keys) Secret(ctx context.Context, id string) (string, bool, error) {
	now := k.now()
	k.mu.Lock()
	c, ok := k.secrets[id]
	deletes := k.deletes
	k.mu.Unlock()
	if ok && now.Sub(c.read) < SecretTTL && !now.Before(c.read) {
		return c.secret, true, nil
	}
	if !validID(id) {
		return "", false, nil
	}
	row, err := k.table.GetAccessKey(ctx, id)
	if errors.Is(err, stratus.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	aead, err := k.sealer(false)
	if err != nil {
		return "", false, fmt.Errorf("unseal access key %s: %w", id, err)
	}
	n := aead.NonceSize()
	if len(row.Sealed) < n {
		return "", false, fmt.Errorf("unseal access key %s: sealed secret is %d bytes", id, len(row.Sealed))
	}
	plain, err := aead.Open(nil, row.Sealed[:n], row.Sealed[n:], []byte(id))
	if err != nil {
		return "", false, fmt.Errorf("unseal access key %s (was %s replaced?): %w", id, k.path, err)
	}
	s := string(plain)
	k.mu.Lock()
	// A Delete since the row was read may have removed it: caching it
	// would keep the removed key working.
	if k.deletes == deletes {
		if len(k.secrets) >= maxCachedSecrets {
			clear(k.secrets)
		}
		k.secrets[id] = cachedSecret{secret: s, read: now}
	}
	k.mu.Unlock()
	return s, true, nil
}

// Used records that key id signed a request at at: written down at most
// once a minute per key.
func (k *Keys) Used(ctx context.Context, id string, at time.Time) {
	k.mu.Lock()
	last, ok := k.touched[id]
	if ok && at.Sub(last) < touchEvery {
		k.mu.Unlock()
		return
	}
	if len(k.touched) >= maxCachedSecrets {
		clear(k.touched)
	}
	k.touched[id] = at
	k.mu.Unlock()
	if err := k.table.TouchAccessKey(ctx, id, at); err != nil {
		k.log.Warn("record access key use", "key", id, "err", err)
	}
}

// sealer returns the AEAD of the seal key, loading it from k.path, or,
// when create is set and there is no file, making it.
func (k *Keys) sealer(create bool) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.aead != nil {
		return k.aead, nil
	}
	key, err := os.ReadFile(k.path)
	if errors.Is(err, fs.ErrNotExist) && create {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("make seal key: %w", err)
		}
		// O_EXCL: never overwrite a key another process just made.
		f, err := os.OpenFile(k.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("make seal key: %w", err)
		}
		_, werr := f.Write(key)
		serr := f.Sync()
		if err := errors.Join(werr, serr, f.Close()); err != nil {
			os.Remove(k.path)
			return nil, fmt.Errorf("make seal key %s: %w", k.path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read seal key: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("seal key %s: %d bytes, want 32", k.path, len(key))
	}
	if fi, err := os.Stat(k.path); err == nil && fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(k.path, 0o600); err != nil {
			return nil, fmt.Errorf("seal key %s: %w", k.path, err)
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal key %s: %w", k.path, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal key %s: %w", k.path, err)
	}
	k.aead = aead
	return aead, nil
}

const (
	idChars     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	secretChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// randomString is prefix followed by random characters of chars, n in all.
func randomString(prefix string, n int, chars string) (string, error) {
	b := make([]byte, n-len(prefix))
	for i := range b {
		// Rejection sampling keeps every character equally likely.
		for {
			var c [1]byte
			if _, err := rand.Read(c[:]); err != nil {
				return "", err
			}
			if limit := 256 - 256%len(chars); int(c[0]) < limit {
				b[i] = chars[int(c[0])%len(chars)]
				break
			}
		}
	}
	return prefix + string(b), nil
}

// validID reports whether id has the shape of the IDs Create makes.
func validID(id string) bool {
	if len(id) != 20 || !strings.HasPrefix(id, KeyIDPrefix) {
		return false
	}
	for i := 0; i < len(id); i++ {
		if strings.IndexByte(idChars, id[i]) < 0 {
			return false
		}
	}
	return true
}

// validDescription checks a key's description.
func validDescription(d string) error {
	if !utf8.ValidString(d) {
		return fmt.Errorf("description: not valid UTF-8: %w", stratus.ErrInvalid)
	}
	if n := utf8.RuneCountInString(d); n > MaxDescription {
		return fmt.Errorf("description: %d characters, more than %d: %w", n, MaxDescription, stratus.ErrInvalid)
	}
	if strings.ContainsFunc(d, unicode.IsControl) {
		return fmt.Errorf("description: holds a control character: %w", stratus.ErrInvalid)
	}
	return nil
}
