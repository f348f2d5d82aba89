package httpevent

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzStringMap(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\s", "\x00\x1f\x7f\n\r\t\b\f", "caf\xe9 \xff\xfe", "\u2028\u2029<>&", "é😀"} {
		f.Add(s, s+"v")
	}
	f.Fuzz(func(t *testing.T, k, v string) {
		m := stringMap{k: v, "z" + k: k}
		got, err := m.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(map[string]string(m))
		if err != nil {
			t.Fatal(err)
		}
		var gotV, wantV map[string]string
		if err := json.Unmarshal(got, &gotV); err != nil {
			t.Fatalf("unmarshal %s: %v", got, err)
		}
		if err := json.Unmarshal(want, &wantV); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantV, gotV); diff != "" {
			t.Errorf("stringMap %q encodes unlike encoding/json (-want +got):\n%s", m, diff)
		}
	})
}
