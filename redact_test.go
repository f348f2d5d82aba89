package stratus

import (
	"strings"
	"testing"
)

// TestRedactURL: a URL in a message shows no password, in its userinfo or
// in its query.
func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@db:5432/x", "postgres://u:xxxxx@db:5432/x"},
		{"postgres://u@db/x?password=secret&sslmode=require", "postgres://u@db/x?password=xxxxx&sslmode=require"},
		{"postgres://u@db/x?sslpassword=secret", "postgres://u@db/x?sslpassword=xxxxx"},
		{"postgres://u@db/x?PassWord=secret&password=again", "postgres://u@db/x?PassWord=xxxxx&password=xxxxx"},
		{"postgres://u@db/x?password=%zz-secret", "postgres://u@db/x?query=xxxxx"},
		{"postgres://u@/x?host=/run/pg", "postgres://u@/x?host=%2Frun%2Fpg"},
		{"postgres://u@db/x", "postgres://u@db/x"},
	} {
		got := RedactURL(tc.in)
		if got != tc.want || strings.Contains(got, "secret") || strings.Contains(got, "again") {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
