package sandbox

import (
	"slices"
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	var got []string
	w := &LineWriter{Emit: func(l string) { got = append(got, l) }}
	for _, s := range []string{"one\ntw", "o\r\n", "", "\n", "three", " and more\nfour"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	w.Close()
	want := []string{"one", "two", "", "three and more", "four"}
	if !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	// A line longer than MaxLine, written in io.Copy's 32 KiB pieces as
	// the driver's copier does, is split.
	got = nil
	long := []byte(strings.Repeat("x", MaxLine+10) + "\n")
	for len(long) > 0 {
		n := min(len(long), 32<<10)
		w.Write(long[:n])
		long = long[n:]
	}
	if len(got) != 2 || len(got[0]) != MaxLine || len(got[1]) != 10 {
		t.Errorf("long line split into %d parts", len(got))
	}
}
