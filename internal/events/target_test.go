package events

import (
	"errors"
	"testing"

	"github.com/stratus-run/stratus"
)

// TestValidTarget: events go to "NAME" or "NAME:QUALIFIER", in that one
// form; "NAME:$LATEST" is NAME.
func TestValidTarget(t *testing.T) {
	for _, tc := range []struct {
		fn   string
		want stratus.FunctionRef // zero: refused
	}{
		{"fn", stratus.FunctionRef{Name: "fn"}},
		{"fn:1", stratus.FunctionRef{Name: "fn", Qualifier: "1"}},
		{"fn:live", stratus.FunctionRef{Name: "fn", Qualifier: "live"}},
		{"fn:$LATEST", stratus.FunctionRef{Name: "fn"}}, // the head
		{"fn:01", stratus.FunctionRef{}},
		{"fn:", stratus.FunctionRef{}},
		{"fn:a:b", stratus.FunctionRef{}},
		{"bad name", stratus.FunctionRef{}},
		{"", stratus.FunctionRef{}},
		{"arn:aws:lambda:local:000000000000:function:fn", stratus.FunctionRef{}},
		{"000000000000:function:fn:1", stratus.FunctionRef{}},
	} {
		got, err := validTarget(tc.fn)
		if tc.want == (stratus.FunctionRef{}) {
			if err == nil || !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("validTarget(%q) = %v, %v; want an invalid error", tc.fn, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("validTarget(%q) = %v, %v; want %v", tc.fn, got, err, tc.want)
		}
	}
}

// FuzzValidTarget: what validTarget takes reads back as itself (or, for
// NAME:$LATEST, as NAME), so that one function has one subject and one
// consumer.
func FuzzValidTarget(f *testing.F) {
	for _, s := range []string{"fn", "fn:1", "fn:live", "fn:$LATEST", "a:b:c", "arn:aws:lambda:r:000000000000:function:x:2", "fn:0", "x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, fn string) {
		ref, err := validTarget(fn)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("validTarget(%q): %v is not ErrInvalid", fn, err)
			}
			return
		}
		if ref.String() != fn && ref.String()+":"+stratus.LatestVersion != fn || ref.Qualifier == stratus.LatestVersion || stratus.ValidName(ref.Name) != nil {
			t.Fatalf("validTarget(%q) = %+v", fn, ref)
		}
	})
}
