package sigv4

import (
	"crypto/sha256"
	"sync"
)

// DefaultCacheSize bounds the cached signing keys when Config.CacheSize is
// 0: one per key, day, region and service in use.
const DefaultCacheSize = 1024

// keyCache holds signing keys derived from a secret and a credential
// scope. An entry remembers a digest of the secret it came from, so a key
// whose secret changed is derived again; Forget drops a removed key's
// entries. When full, it is emptied (entries are cheap to derive again).
type keyCache struct {
	max int

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct{ id, date, region, service string }

type cacheEntry struct {
	secret [sha256.Size]byte // digest of the secret the key was derived from
	key    []byte
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, entries: make(map[cacheKey]cacheEntry)}
}

// get returns the signing key of a's scope and secret, deriving and
// caching it if needed.
func (c *keyCache) get(a *authorization, secret string) []byte {
	k := cacheKey{a.keyID, a.date, a.region, a.service}
	digest := sha256.Sum256([]byte(secret))
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && e.secret == digest {
		return e.key
	}
	key := deriveKey(secret, a.date, a.region, a.service)
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[k] = cacheEntry{secret: digest, key: key}
	c.mu.Unlock()
	return key
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
