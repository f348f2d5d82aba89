package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

// TestOpenRedacts: Open's errors name a PostgreSQL target without its
// passwords (stratus.RedactURL).
func TestOpenRedacts(t *testing.T) {
	// Open's errors name the target redacted.
	_, err := Open(context.Background(), "postgres://u:secret@127.0.0.1:notaport/x?password=secret2&sslpassword=secret3")
	if !errors.Is(err, stratus.ErrInvalid) || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open with a bad URL: %v; want ErrInvalid without the passwords", err)
	}
}
