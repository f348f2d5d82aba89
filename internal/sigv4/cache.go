package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
)

// DefaultCacheSize bounds the cached signing keys when Config.CacheSize is
// 0: one per key, day, region and service in use.
const DefaultCacheSize = 1024

// keyCache holds signing keys derived from a secret and a credential
// scope. An entry remembers the secret it came from, so a key whose
// secret changed is derived again; Forget drops a removed key's entries.
// When full, it is emptied (entries are cheap to derive again).
type keyCache struct {
	max int

	mu      sync.Mutex
	entries map[cacheKey]*signingKey
}

type cacheKey struct{ id, date, region, service string }

// signingKey is a derived signing key and the secret it was derived from.
// Its HMAC states are kept for reuse: hmac.New computes the key's inner
// and outer pads, Reset only restores them.
type signingKey struct {
	secret string
	key    []byte
	macs   sync.Pool // of hash.Hash: HMAC-SHA256 keyed with key
}

func newSigningKey(secret string, key []byte) *signingKey {
	k := &signingKey{secret: secret, key: key}
	k.macs.New = func() any { return hmac.New(sha256.New, k.key) }
	return k
}

// sum appends the HMAC-SHA256 of data under the key to dst.
func (k *signingKey) sum(dst, data []byte) []byte {
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(data)
	dst = m.Sum(dst)
	k.macs.Put(m)
	return dst
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, entries: make(map[cacheKey]*signingKey)}
}

// get returns the signing key of a's scope and secret, deriving and
// caching it if needed. An entry serves only the secret it was derived
// from (compared whole: both strings are the server's own).
func (c *keyCache) get(a *authorization, secret string) *signingKey {
	k := cacheKey{a.keyID, a.date, a.region, a.service}
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && e.secret == secret {
		return e
	}
	e = newSigningKey(secret, deriveKey(secret, a.date, a.region, a.service))
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[k] = e
	c.mu.Unlock()
	return e
}

// forget drops the entries of the access key id.
func (c *keyCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.id == id {
			delete(c.entries, k)
		}
	}
}

// len is the number of cached keys.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// deriveKey is SigV4's signing key of secret for a date, region and
// service.
func deriveKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}
