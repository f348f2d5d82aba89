// Package blobs moves the code and images a server needs between the
// servers of a cluster, through one JetStream object store bucket
// (STRATUS_BLOBS). Objects are named by what they hold:
//
//	code/HEX             a function's code zip; HEX the hex of its SHA-256
//	image/sha256:HEX     an image as one archive the image store imports,
//	                     named by its manifest digest
//	ref/ESCAPED          the manifest digest an image ref names now;
//	                     ESCAPED is url.PathEscape of the fully qualified ref
//
// Content-addressed objects (code/, image/) are written once: a Put of a
// name the bucket holds keeps what is there. A ref/ object is the one kind
// that changes: a Put rewrites it when the digest differs. Get checks a
// code/ object against the SHA-256 its name gives; an image/ archive is
// checked by the image store as it imports it (its manifest digest must be
// the name's, and every layer and config the manifest's), since the digest
// of an archive is not the digest of the manifest it carries. Every object
// is also checked against the digest the object store keeps for it.
//
// A Store holds no goroutine and no lock of its own; its methods are safe
// for concurrent use (they are calls on a jetstream.ObjectStore).
package blobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-run/stratus"
)

// Bucket is the object store bucket every server of a cluster shares.
const Bucket = "STRATUS_BLOBS"

// MaxRef bounds a ref/ object: a manifest digest and a little room.
const MaxRef = 1 << 10

// maxRefName bounds the escaped ref in a ref/ name.
const maxRefName = 1 << 10

// Store reads and writes blobs in the STRATUS_BLOBS bucket.
type Store struct {
	obs jetstream.ObjectStore
}

// Open makes the bucket STRATUS_BLOBS (file storage, replicas copies; 0
// means 1) or opens it as it is, and returns a Store on it. It blocks on
// JetStream; an unreachable or refusing JetStream is ErrUnavailable.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	if js == nil {
		return nil, fmt.Errorf("open blob store: no jetstream: %w", stratus.ErrInvalid)
	}
	if replicas < 0 || replicas > 5 {
		return nil, fmt.Errorf("open blob store: %d replicas (1 to 5): %w", replicas, stratus.ErrInvalid)
	}
	cfg := BucketConfig()
	cfg.Replicas = max(replicas, 1)
	obs, err := js.CreateOrUpdateObjectStore(ctx, cfg)
	if err != nil {
		// Another server made it at the same moment: take it as it is.
		if o, oerr := js.ObjectStore(ctx, Bucket); oerr == nil {
			return &Store{obs: o}, nil
		}
		return nil, fmt.Errorf("open blob store %s: %w", Bucket, kind(err))
	}
	return &Store{obs: obs}, nil
}

// BucketConfig is the configuration of the bucket STRATUS_BLOBS, but for
// its replicas, which are the event bus's (events.Bus.MakeObjectStore).
func BucketConfig() jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{
		Bucket:      Bucket,
		Description: "Stratus: function code and container images shared by the servers",
		Storage:     jetstream.FileStorage,
	}
}

// On returns a Store on obs, the bucket BucketConfig describes, made by
// whoever makes the event system's streams (events.Bus.MakeObjectStore),
// which waits for a NATS cluster that cannot place it yet.
func On(obs jetstream.ObjectStore) *Store { return &Store{obs: obs} }

// CodeName is the name of a function's code zip whose SHA-256 is sha (hex).
func CodeName(sha string) string { return "code/" + sha }

// ImageName is the name of the archive of the image with this manifest
// digest ("sha256:HEX").
func ImageName(digest string) string { return "image/" + digest }

// RefName is the name of the object that holds the manifest digest ref
// names (ref fully qualified, as the image store writes it).
func RefName(ref string) string { return "ref/" + url.PathEscape(ref) }

// name is a checked object name.
type name struct {
	full   string
	prefix string // "code", "image" or "ref"
	sha    string // the SHA-256 (hex) a code/ object must have; "" otherwise
}

// parseName checks an object name: one of the three prefixes, a SHA-256
// in the form its prefix takes, or a canonically escaped ref.
func parseName(s string) (name, error) {
	bad := func(why string) (name, error) {
		return name{}, fmt.Errorf("blob name %q: %s: %w", s, why, stratus.ErrInvalid)
	}
	prefix, rest, ok := strings.Cut(s, "/")
	if !ok {
		return bad("want code/SHA256, image/sha256:HEX or ref/ESCAPED-REF")
	}
	switch prefix {
	case "code":
		if !isSHA256Hex(rest) {
			return bad("want code/ and 64 lowercase hex digits")
		}
		return name{full: s, prefix: prefix, sha: rest}, nil
	case "image":
		hexPart, ok := strings.CutPrefix(rest, "sha256:")
		if !ok || !isSHA256Hex(hexPart) {
			return bad("want image/sha256: and 64 lowercase hex digits")
		}
		return name{full: s, prefix: prefix}, nil
	case "ref":
		if rest == "" || len(rest) > maxRefName {
			return bad(fmt.Sprintf("the ref must have 1 to %d characters", maxRefName))
		}
		ref, err := url.PathUnescape(rest)
		if err != nil || url.PathEscape(ref) != rest {
			return bad("the ref is not escaped as url.PathEscape escapes it")
		}
		if ref == "." || ref == ".." || strings.ContainsFunc(ref, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
			return bad("not an image ref")
		}
		return name{full: s, prefix: prefix}, nil
	}
	return bad(fmt.Sprintf("unknown prefix %q (code/, image/ or ref/)", prefix))
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Put stores what r holds under name. It is idempotent: a code/ or image/
// object the bucket already holds is kept and r is not read, unless a
// code/ object's content (as the object store's digest of it says) is not
// its name's: it is replaced; a ref/ object is rewritten only when its
// content differs. A code/ object whose content
// does not have the SHA-256 of its name is removed again and refused
// (ErrInvalid); a ref/ object over MaxRef bytes is ErrTooLarge. Put blocks
// until JetStream has stored every chunk (ErrUnavailable when it cannot).
// Two servers that Put the same new name at once both write it (same
// bytes); a Get during the second write may fail and is retried.
func (s *Store) Put(ctx context.Context, n string, r io.Reader) error {
	nm, err := parseName(n)
	if err != nil {
		return fmt.Errorf("put blob: %w", err)
	}
	if nm.prefix == "ref" {
		return s.putRef(ctx, nm, r)
	}
	if info, err := s.obs.GetInfo(ctx, n); err == nil {
		if nm.sha == "" || info.Digest == objectDigest(nm.sha) {
			return nil
		}
		// A code/ object whose content is not its name's (written by
		// something else than Put) would be refused by every Get
		// forever: it is replaced.
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("put blob %s: %w", n, kind(err))
	}
	h := sha256.New()
	src := &errReader{r: io.TeeReader(r, h)}
	if _, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: n}, src); err != nil {
		if src.err != nil {
			return fmt.Errorf("put blob %s: read: %w", n, src.err)
		}
		return fmt.Errorf("put blob %s: %w", n, kind(err))
	}
	if got := hex.EncodeToString(h.Sum(nil)); nm.sha != "" && got != nm.sha {
		derr := s.obs.Delete(context.WithoutCancel(ctx), n)
		return errors.Join(fmt.Errorf("put blob %s: content has sha256 %s: %w", n, got, stratus.ErrInvalid), derr)
	}
	return nil
}

// objectDigest is the digest the object store keeps for content whose
// SHA-256 is sha (hex): "SHA-256=" and the base64url of its bytes.
func objectDigest(sha string) string {
	b, _ := hex.DecodeString(sha)
	return "SHA-256=" + base64.URLEncoding.EncodeToString(b)
}

func (s *Store) putRef(ctx context.Context, nm name, r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, MaxRef+1))
	if err != nil {
		return fmt.Errorf("put blob %s: %w", nm.full, err)
	}
	if len(b) > MaxRef {
		return fmt.Errorf("put blob %s: more than %d bytes: %w", nm.full, MaxRef, stratus.ErrTooLarge)
	}
	sum := sha256.Sum256(b)
	want := "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
	info, err := s.obs.GetInfo(ctx, nm.full)
	switch {
	case err == nil && info.Digest == want:
		return nil
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return fmt.Errorf("put blob %s: %w", nm.full, kind(err))
	}
	if _, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: nm.full}, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("put blob %s: %w", nm.full, kind(err))
	}
	return nil
}

// Get writes the object name to w as it arrives. A missing object is
// ErrNotFound. A code/ object whose content does not have the SHA-256 of
// its name, or any object that does not match the digest the object store
// keeps, is ErrInvalid once the last byte has been written: w has then
// received the bad bytes, so callers write to a temporary file and rename
// it only when Get returns nil (GetFile does). Get blocks until the whole
// object has been read.
func (s *Store) Get(ctx context.Context, n string, w io.Writer) error {
	nm, err := parseName(n)
	if err != nil {
		return fmt.Errorf("get blob: %w", err)
	}
	res, err := s.obs.Get(ctx, n)
	if err != nil {
		return fmt.Errorf("get blob %s: %w", n, kind(err))
	}
	defer res.Close()
	h := sha256.New()
	dst := &errWriter{w: w}
	if _, err := io.Copy(io.MultiWriter(dst, h), res); err != nil {
		if dst.err != nil {
			return fmt.Errorf("get blob %s: write: %w", n, dst.err)
		}
		return fmt.Errorf("get blob %s: %w", n, kind(err))
	}
	if got := hex.EncodeToString(h.Sum(nil)); nm.sha != "" && got != nm.sha {
		return fmt.Errorf("get blob %s: content has sha256 %s, not the one its name gives: %w", n, got, stratus.ErrInvalid)
	}
	return nil
}

// kind adds a stratus error kind to an error of the object store: a
// missing object is ErrNotFound, a corrupt one ErrInvalid, the end of ctx
// stays itself, and anything else (no JetStream, a timeout, a lost
// connection) is ErrUnavailable.
func kind(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound), errors.Is(err, jetstream.ErrBucketNotFound):
		return fmt.Errorf("%w: %w", err, stratus.ErrNotFound)
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return fmt.Errorf("%w: %w", err, stratus.ErrInvalid)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, stratus.ErrInvalid), errors.Is(err, stratus.ErrNotFound):
		return err
	}
	return fmt.Errorf("%w: %w", err, stratus.ErrUnavailable)
}

// errReader keeps the error of the caller's reader, to tell it from the
// object store's.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// errWriter keeps the error of the caller's writer, to tell it from the
// object store's.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}
