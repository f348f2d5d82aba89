package stratus_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestParseFunctionRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want stratus.FunctionRef // zero: an error
	}{
		{"fn", stratus.FunctionRef{Name: "fn"}},
		{"my-fn_2", stratus.FunctionRef{Name: "my-fn_2"}},
		{"fn:$LATEST", stratus.FunctionRef{Name: "fn", Qualifier: "$LATEST"}},
		{"fn:1", stratus.FunctionRef{Name: "fn", Qualifier: "1"}},
		{"fn:42", stratus.FunctionRef{Name: "fn", Qualifier: "42"}},
		{"fn:live", stratus.FunctionRef{Name: "fn", Qualifier: "live"}},
		{"fn:v1", stratus.FunctionRef{Name: "fn", Qualifier: "v1"}},
		{"fn:-1", stratus.FunctionRef{Name: "fn", Qualifier: "-1"}}, // an alias name, as on Lambda
		{"123456789012:function:fn", stratus.FunctionRef{Name: "fn"}},
		{"123456789012:function:fn:live", stratus.FunctionRef{Name: "fn", Qualifier: "live"}},
		{"arn:aws:lambda:us-east-1:123456789012:function:fn", stratus.FunctionRef{Name: "fn"}},
		{"arn:aws:lambda:local:000000000000:function:fn:3", stratus.FunctionRef{Name: "fn", Qualifier: "3"}},
		{"arn:aws-cn:lambda:cn-north-1:123456789012:function:fn:$LATEST", stratus.FunctionRef{Name: "fn", Qualifier: "$LATEST"}},

		{"", stratus.FunctionRef{}},
		{":", stratus.FunctionRef{}},
		{"fn:", stratus.FunctionRef{}},
		{":live", stratus.FunctionRef{}},
		{"fn:0", stratus.FunctionRef{}},
		{"fn:01", stratus.FunctionRef{}},
		{"fn:+1", stratus.FunctionRef{}},
		{"fn:99999999999999999999999", stratus.FunctionRef{}}, // digits only, beyond an int: neither
		{"fn:$latest", stratus.FunctionRef{}},
		{"fn:a.b", stratus.FunctionRef{}},
		{"fn:" + strings.Repeat("a", 129), stratus.FunctionRef{}},
		{"f.n", stratus.FunctionRef{}},
		{strings.Repeat("x", 65), stratus.FunctionRef{}},
		{"a:b:c", stratus.FunctionRef{}},
		{"12345678901:function:fn", stratus.FunctionRef{}},
		{"123456789012:function:fn:a:b", stratus.FunctionRef{}},
		{"123456789012:func:fn", stratus.FunctionRef{}},
		{"arn:aws:s3:us-east-1:123456789012:function:fn", stratus.FunctionRef{}},
		{"arn:aws:lambda:us-east-1:123456789012:layer:fn", stratus.FunctionRef{}},
		{"arn:aws:lambda:US_EAST:123456789012:function:fn", stratus.FunctionRef{}},
		{"arn::lambda:us-east-1:123456789012:function:fn", stratus.FunctionRef{}},
		{"arn:aws:lambda:us-east-1:123456789012:function:fn:1:2", stratus.FunctionRef{}},
		{"arn:aws:lambda:us-east-1:123456789012:function:", stratus.FunctionRef{}},
	} {
		got, err := stratus.ParseFunctionRef(tc.in)
		if tc.want == (stratus.FunctionRef{}) {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("ParseFunctionRef(%q) = %+v, %v; want ErrInvalid", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseFunctionRef(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseFunctionRef: whatever it accepts has a valid name and
// qualifier and reads back the same from its String; whatever it refuses
// is ErrInvalid.
func FuzzParseFunctionRef(f *testing.F) {
	for _, s := range []string{
		"fn", "fn:$LATEST", "fn:7", "fn:live", "fn:", "fn:0", "fn:01", "a:b:c", ":",
		"123456789012:function:fn:prod",
		"arn:aws:lambda:eu-west-1:123456789012:function:fn:12",
		"arn:aws:lambda:eu-west-1:123456789012:function:fn:a:b",
		"arn:aws:lambda::123456789012:function:fn",
		"fn:\x00", "fn:é", "fn%3A1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := stratus.ParseFunctionRef(s)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("ParseFunctionRef(%q) = %v, want ErrInvalid", s, err)
			}
			return
		}
		if err := stratus.ValidName(r.Name); err != nil {
			t.Fatalf("ParseFunctionRef(%q) gave name %q: %v", s, r.Name, err)
		}
		if r.Qualifier != "" {
			if err := stratus.ValidQualifier(r.Qualifier); err != nil {
				t.Fatalf("ParseFunctionRef(%q) gave qualifier %q: %v", s, r.Qualifier, err)
			}
		}
		_, isVersion := r.Version()
		_, isAlias := r.Alias()
		if r.Latest() && (isVersion || isAlias) || isVersion && isAlias || !r.Latest() && !isVersion && !isAlias {
			t.Fatalf("ParseFunctionRef(%q) = %+v: latest %v, version %v, alias %v; want exactly one", s, r, r.Latest(), isVersion, isAlias)
		}
		back, err := stratus.ParseFunctionRef(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseFunctionRef(%q) = %+v, but its String %q reads back as %+v, %v", s, r, r.String(), back, err)
		}
		arn := stratus.FunctionARN("local", stratus.DefaultAccountID, r.Name, r.Qualifier)
		if back, err := stratus.ParseFunctionRef(arn); err != nil || back != r {
			t.Fatalf("ARN %q of %+v reads back as %+v, %v", arn, r, back, err)
		}
	})
}

func TestValidQualifier(t *testing.T) {
	for _, tc := range []struct {
		q  string
		ok bool
	}{
		{"$LATEST", true}, {"1", true}, {"10", true}, {"2147483647", true},
		{"live", true}, {"PROD_2", true}, {"a-b", true}, {strings.Repeat("a", 128), true},
		{"", false}, {"0", false}, {"007", false}, {"+3", false}, {"$latest", false}, {"LATEST", true},
		{"a b", false}, {"a:b", false}, {"é", false}, {strings.Repeat("a", 129), false},
		{"99999999999999999999999", false},
	} {
		err := stratus.ValidQualifier(tc.q)
		if tc.ok && err != nil {
			t.Errorf("ValidQualifier(%q) = %v, want nil", tc.q, err)
		}
		if !tc.ok && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("ValidQualifier(%q) = %v, want ErrInvalid", tc.q, err)
		}
	}
}

func TestAliasValidate(t *testing.T) {
	w := func(v string, x float64) map[string]float64 { return map[string]float64{v: x} }
	for _, tc := range []struct {
		what string
		a    stratus.Alias
		ok   bool
		in   string // in the error
	}{
		{"a version", stratus.Alias{Name: "live", Version: "1"}, true, ""},
		{"$LATEST", stratus.Alias{Name: "dev", Version: "$LATEST"}, true, ""},
		{"weighted", stratus.Alias{Name: "live", Version: "1", Weights: w("2", 0.1)}, true, ""},
		{"all to the other", stratus.Alias{Name: "live", Version: "1", Weights: w("2", 1)}, true, ""},
		{"no share", stratus.Alias{Name: "live", Version: "3", Weights: w("2", 0)}, true, ""},
		{"digits only", stratus.Alias{Name: "12", Version: "1"}, false, "not only digits"},
		{"empty name", stratus.Alias{Name: "", Version: "1"}, false, "alias"},
		{"bad name", stratus.Alias{Name: "a.b", Version: "1"}, false, "alias"},
		{"no version", stratus.Alias{Name: "live"}, false, "version"},
		{"version 0", stratus.Alias{Name: "live", Version: "0"}, false, "version"},
		{"version is an alias", stratus.Alias{Name: "live", Version: "prod"}, false, "version"},
		{"two weights", stratus.Alias{Name: "live", Version: "1", Weights: map[string]float64{"2": 0.1, "3": 0.1}}, false, "at most 1"},
		{"weight on $LATEST", stratus.Alias{Name: "live", Version: "1", Weights: w("$LATEST", 0.5)}, false, "published"},
		{"weight on its own version", stratus.Alias{Name: "live", Version: "1", Weights: w("1", 0.5)}, false, "points at already"},
		{"weights on $LATEST's alias", stratus.Alias{Name: "live", Version: "$LATEST", Weights: w("1", 0.5)}, false, "no weights"},
		{"weight over 1", stratus.Alias{Name: "live", Version: "1", Weights: w("2", 1.5)}, false, "between 0 and 1"},
		{"negative weight", stratus.Alias{Name: "live", Version: "1", Weights: w("2", -0.1)}, false, "between 0 and 1"},
		{"NaN", stratus.Alias{Name: "live", Version: "1", Weights: w("2", math.NaN())}, false, "between 0 and 1"},
		{"weight on an alias", stratus.Alias{Name: "live", Version: "1", Weights: w("beta", 0.5)}, false, "published"},
	} {
		err := tc.a.Validate()
		if tc.ok {
			if err != nil {
				t.Errorf("%s: Validate() = %v, want nil", tc.what, err)
			}
			continue
		}
		if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid saying %q", tc.what, err, tc.in)
		}
	}
}

func TestVersionRunsAs(t *testing.T) {
	for _, tc := range []struct {
		q, key, runsAs string
	}{
		{"", "fn", "$LATEST"},
		{"$LATEST", "fn", "$LATEST"},
		{"3", "fn:3", "3"},
	} {
		v := &stratus.Version{Function: "fn", Version: 9, Qualifier: tc.q}
		if got := v.PoolKey(); got != tc.key {
			t.Errorf("qualifier %q: PoolKey %q, want %q", tc.q, got, tc.key)
		}
		if got := v.RunsAs(); got != tc.runsAs {
			t.Errorf("qualifier %q: RunsAs %q, want %q", tc.q, got, tc.runsAs)
		}
	}
	if got := stratus.FunctionARN("eu-west-1", "123456789012", "fn", "live"); got != "arn:aws:lambda:eu-west-1:123456789012:function:fn:live" {
		t.Errorf("FunctionARN = %q", got)
	}
	if got := stratus.FunctionARN("local", stratus.DefaultAccountID, "fn", ""); got != "arn:aws:lambda:local:000000000000:function:fn" {
		t.Errorf("FunctionARN without a qualifier = %q", got)
	}
}
