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

// TestLineWriterAllow: a line Allow refuses is dropped before it is
// copied (a refused 256 KiB line costs no allocation), and Allow is asked
// with each line's length, pieces of long lines and the last unterminated
// line included.
func TestLineWriterAllow(t *testing.T) {
	var got []string
	var asked []int
	budget := 10
	w := &LineWriter{
		Emit: func(l string) { got = append(got, l) },
		Allow: func(n int) bool {
			asked = append(asked, n)
			if n > budget {
				return false
			}
			budget -= n
			return true
		},
	}
	w.Write([]byte("four\ntoo long\nsix\r\n"))
	w.Write([]byte("ab"))
	w.Close()
	if want := []string{"four", "six", "ab"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if want := []int{4, 8, 3, 2}; !slices.Equal(asked, want) {
		t.Errorf("Allow asked %v, want %v", asked, want)
	}

	// Refused huge lines, whole and in pieces, allocate nothing once the
	// writer's buffer has grown.
	w = &LineWriter{Emit: func(string) { t.Fatal("emitted a refused line") }, Allow: func(int) bool { return false }}
	whole := []byte(strings.Repeat("x", MaxLine-1) + "\n")
	piece := []byte(strings.Repeat("y", 32<<10))
	w.Write(whole)
	w.Write(piece)
	allocs := testing.AllocsPerRun(20, func() {
		w.Write(whole)
		for range MaxLine / len(piece) {
			w.Write(piece)
		}
	})
	if allocs > 0 {
		t.Errorf("%.1f allocations per refused 256 KiB line, want 0", allocs)
	}
}
