package functions

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/stratus-run/stratus"
)

// Limits of a function's tags, as on Lambda: at most MaxTags, keys of 1
// to MaxTagKeySize characters not starting with "aws:", values of at most
// MaxTagValueSize characters.
const (
	MaxTags         = 50
	MaxTagKeySize   = 128
	MaxTagValueSize = 256
)

// ValidTags checks tags' keys and values (not their number with the
// tags a function has: TagFunction does); a bad one is an error wrapping
// stratus.ErrInvalid.
func ValidTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%d tags: at most %d: %w", len(tags), MaxTags, stratus.ErrInvalid)
	}
	for k, v := range tags {
		if err := ValidTagKey(k); err != nil {
			return err
		}
		if !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxTagValueSize {
			return fmt.Errorf("tag %q: value must be at most %d characters of UTF-8: %w", k, MaxTagValueSize, stratus.ErrInvalid)
		}
	}
	return nil
}

// ValidTagKey checks a tag key: 1 to MaxTagKeySize characters of UTF-8,
// not starting with "aws:" (in any case), which names tags AWS sets.
func ValidTagKey(k string) error {
	if n := utf8.RuneCountInString(k); !utf8.ValidString(k) || n < 1 || n > MaxTagKeySize {
		return fmt.Errorf("tag key %q: must be 1 to %d characters of UTF-8: %w", k, MaxTagKeySize, stratus.ErrInvalid)
	}
	if strings.HasPrefix(strings.ToLower(k), "aws:") {
		return fmt.Errorf("tag key %q: the prefix aws: is reserved: %w", k, stratus.ErrInvalid)
	}
	return nil
}

// TagFunction adds tags to function name, replacing the values of keys
// it has. Bad tags, or more than MaxTags in all, are an error wrapping
// stratus.ErrInvalid, a missing function one wrapping
// stratus.ErrNotFound; either changes nothing.
func (s *Service) TagFunction(ctx context.Context, name string, tags map[string]string) error {
	if err := ValidTags(tags); err != nil {
		return err
	}
	return s.st.TagFunction(ctx, name, tags, MaxTags)
}

// UntagFunction removes function name's tags with the given keys; keys
// it does not have are no error. A bad key is an error wrapping
// stratus.ErrInvalid, a missing function one wrapping
// stratus.ErrNotFound.
func (s *Service) UntagFunction(ctx context.Context, name string, keys []string) error {
	for _, k := range keys {
		if err := ValidTagKey(k); err != nil {
			return err
		}
	}
	return s.st.UntagFunction(ctx, name, keys)
}

// FunctionTags returns function name's tags (empty when it has none), or
// an error wrapping stratus.ErrNotFound.
func (s *Service) FunctionTags(ctx context.Context, name string) (map[string]string, error) {
	return s.st.FunctionTags(ctx, name)
}
