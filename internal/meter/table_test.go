package meter

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestDefaultValid(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1", "eu-north-1", "ap-southeast-1", "ap-northeast-1"} {
		if _, ok := d.Energy.GridIntensity[r]; !ok {
			t.Errorf("no default intensity for %s", r)
		}
	}
	// Each call has its own map.
	d.Energy.GridIntensity["eu-west-1"] = 0
	if Default().Energy.GridIntensity["eu-west-1"] != 278.6 {
		t.Error("Default's map is shared")
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meter.json")
	if err := os.WriteFile(path, []byte(`{
  "prices": {"asOf": "2027-01-15", "lambdaGBSecondX86": 0.00002},
  "energy": {
    "pue": 1.2,
    "gridIntensity": {"local": 120, "eu-west-1": 300}
  }
}`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Prices.AsOf = "2027-01-15"
	want.Prices.LambdaGBSecondX86 = 0.00002
	want.Energy.PUE = 1.2
	want.Energy.GridIntensity["local"] = 120
	want.Energy.GridIntensity["eu-west-1"] = 300
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %+v\nwant %+v", got, want)
	}

	if _, err := Load(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file = %v", err)
	}
}

func TestParseNullMap(t *testing.T) {
	got, err := Parse("m.json", []byte(`{"energy": {"gridIntensity": null}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("gridIntensity null: %+v", got.Energy.GridIntensity)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "m.json:1:1: empty: want a JSON object"},
		{"number", "{\"energy\": {\"pue\": 1.2,\n \"maxWattsPerVCPU\": [3]}}", "m.json:2:21: energy.maxWattsPerVCPU: want a number, not array"},
		{"string", "{\"prices\": {\"asOf\": 20261206}}", "m.json:1:21: prices.asOf: want a string, not number"},
		{"spaces", "\n\n  ", "m.json:3:3: empty: want a JSON object"},
		{"syntax", "{\n  \"prices\": {\n    \"asOf\": \"2026-01-01\",,\n  }\n}",
			"m.json:3:26: invalid character ',' looking for beginning of object key string"},
		{"truncated", "{\n  \"energy\": {\"pue\": 1.2\n", "m.json:3:1: unexpected end of the file"},
		{"type", "{\n  \"energy\": {\n    \"pue\": \"high\"\n  }\n}",
			"m.json:3:12: energy.pue: want a number, not string"},
		{"type in map", "{\"energy\": {\"gridIntensity\": {\n\"x\": true}}}",
			"m.json:2:6: energy.gridIntensity: want a number, not bool"},
		{"not an object", "[1, 2]", "m.json:1:1: want a JSON object, not array"},
		{"unknown", "{\n  \"prices\": {},\n  \"energy\": {\n    \"watts\": 3\n  }\n}",
			`m.json:4:5: unknown field "watts"`},
		{"unknown top", "{\"price\": {}}", `m.json:1:2: unknown field "price"`},
		{"trailing", "{}\n{}", "m.json:2:1: unexpected data after the table's object"},
		{"invalid", "{\n  \"energy\": {\n    \"pue\": 0.9\n  }\n}",
			"m.json:3:5: energy.pue: 0.9 is below 1"},
		{"two invalid", "{\"energy\": {\"minWattsPerVCPU\": 4,\n \"gridIntensity\": {\"eu-west-1\": -1}}}",
			`m.json:1:13: energy.minWattsPerVCPU: 4 is above energy.maxWattsPerVCPU (3.5); ` +
				`m.json:2:20: energy.gridIntensity["eu-west-1"]: -1 is negative`},
		// Keys match fields case-insensitively, as encoding/json matches
		// them, and are found in the file the same way.
		{"other case", `{"Energy":{"Pue":0.5}}`, "m.json:1:12: energy.pue: 0.5 is below 1"},
		{"unknown, other case", "{\"ENERGY\": {\n  \"Watts\": 1}}", `m.json:2:3: unknown field "Watts"`},
		// "pue" is a region of the map before it is an unknown top-level
		// field: the error is at the field.
		{"unknown after a region of that name", `{"energy":{"gridIntensity":{"pue":1}}, "pue": 3}`,
			`m.json:1:40: unknown field "pue"`},
		{"escaped key", `{"prices":{"\u0061sOf":"May"}}`, `m.json:1:12: prices.asOf: "May" is not a date (YYYY-MM-DD)`},
		// Only the maximum given, below the default minimum: the error is
		// at the key that is there.
		{"max below the default min", "{\"energy\": {\n  \"maxWattsPerVCPU\": 0.5\n}}",
			"m.json:2:3: energy.maxWattsPerVCPU: 0.5 is below the default energy.minWattsPerVCPU (0.74): give a minWattsPerVCPU of at most 0.5 as well"},
		{"min and max", "{\"energy\": {\"maxWattsPerVCPU\": 1,\n \"minWattsPerVCPU\": 2}}",
			"m.json:2:2: energy.minWattsPerVCPU: 2 is above energy.maxWattsPerVCPU (1)"},
		// A field given twice: encoding/json would keep the last silently.
		{"duplicate", "{\"energy\": {\"pue\": 1.2,\n  \"PUE\": 2}}",
			`m.json:2:3: energy.pue: "PUE" given a second time (first as "pue" at 1:13): keep one`},
		{"duplicate, same spelling", "{\"prices\": {\"asOf\": \"2027-01-01\", \"asOf\": \"2027-02-01\"}}",
			`m.json:1:35: prices.asOf: given a second time (first at 1:13): keep one`},
		{"duplicate region", `{"energy": {"gridIntensity": {"a": 1, "A": 2, "a": 3}}}`,
			`m.json:1:47: energy.gridIntensity["a"]: given a second time (first at 1:31): keep one`},
		{"duplicate object", `{"energy": {"pue": 1.2}, "Energy": {"pue": 1.3}, "prices": {}, "prices": {}}`,
			`m.json:1:26: energy: "Energy" given a second time (first as "energy" at 1:2): keep one; ` +
				`m.json:1:64: prices: given a second time (first at 1:50): keep one`},
		{"out of range", "{\"energy\": {\n  \"pue\": 1e400}}",
			"m.json:2:10: energy.pue: 1e400 is out of range: it must be within ±1.8e308"},
		{"out of range in the map", `{"energy": {"gridIntensity": {"a": -1e999}}}`,
			"m.json:1:36: energy.gridIntensity: -1e999 is out of range: it must be within ±1.8e308"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("m.json", []byte(tc.in))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err, tc.want)
			}
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("%v is not ErrInvalid", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Table)
		want   string // "" for valid
	}{
		{"default", func(*Table) {}, ""},
		{"zero prices", func(t *Table) { t.Prices = Prices{} }, ""},
		{"PUE 1", func(t *Table) { t.Energy.PUE = 1 }, ""},
		{"min = max", func(t *Table) { t.Energy.MinWattsPerVCPU = 3.5 }, ""},
		{"negative price", func(t *Table) { t.Prices.LambdaGBSecondArm = -1e-6 },
			"prices.lambdaGBSecondArm: -1e-06 is negative"},
		{"negative run price", func(t *Table) { t.Prices.RunPerMillionReqs = -0.4 },
			"prices.cloudRunPerMillionRequests: -0.4 is negative"},
		{"PUE below 1", func(t *Table) { t.Energy.PUE = 0.9 }, "energy.pue: 0.9 is below 1"},
		{"PUE missing", func(t *Table) { t.Energy.PUE = 0 }, "energy.pue: 0 is below 1"},
		{"PUE NaN", func(t *Table) { t.Energy.PUE = math.NaN() }, "energy.pue: NaN is not a number"},
		{"min above max", func(t *Table) { t.Energy.MinWattsPerVCPU, t.Energy.MaxWattsPerVCPU = 2, 1 },
			"energy.minWattsPerVCPU: 2 is above energy.maxWattsPerVCPU (1)"},
		{"negative min", func(t *Table) { t.Energy.MinWattsPerVCPU = -1 }, "energy.minWattsPerVCPU: -1 is negative"},
		{"negative memory", func(t *Table) { t.Energy.MemoryWattsPerGB = -0.1 }, "energy.memoryWattsPerGB: -0.1 is negative"},
		{"negative intensity", func(t *Table) { t.Energy.GridIntensity["eu-west-1"] = -5 },
			`energy.gridIntensity["eu-west-1"]: -5 is negative`},
		{"infinite intensity", func(t *Table) { t.Energy.DefaultIntensity = math.Inf(1) },
			"energy.defaultIntensity: +Inf is not a number"},
		{"negative embodied", func(t *Table) { t.Energy.EmbodiedGPerVCPUHour = -1 },
			"energy.embodiedGPerVCPUHour: -1 is negative"},
		{"bad date", func(t *Table) { t.Prices.AsOf = "Dec 2026" },
			`prices.asOf: "Dec 2026" is not a date (YYYY-MM-DD)`},
		{"two", func(t *Table) { t.Energy.PUE, t.Prices.LambdaPerMillionReqs = 0.5, -1 },
			"prices.lambdaPerMillionRequests: -1 is negative; energy.pue: 0.5 is below 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := Default()
			tc.change(&tab)
			err := tab.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("Validate = %v, want %q", err, tc.want)
			case err != nil && !errors.Is(err, stratus.ErrInvalid):
				t.Errorf("%v is not ErrInvalid", err)
			}
		})
	}
}

// placed is the start of an error at a place in file f.json.
var placed = regexp.MustCompile(`^f\.json:[0-9]+:[0-9]+: `)

// FuzzParse: Parse never panics; what it accepts is valid and reads back
// the same once written; what it refuses is ErrInvalid and names the
// file, the line and the column.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		``,
		`{}`,
		`{"prices": {"lambdaGBSecondX86": 0.00002, "asOf": "2027-01-01"}}`,
		`{"energy": {"pue": 1.2, "gridIntensity": {"local": 100, "eu-west-1": 0}}}`,
		`{"energy": {"gridIntensity": null}}`,
		`{"energy": {"pue": 0.9}}`,
		`{"energy": {"minWattsPerVCPU": 5}}`,
		`{"prices": {"asOf": 3}}`,
		`{"prices": {"x": 1}}`,
		`{"energy": {"gridIntensity": {"a": -1, "b": "c"}}}`,
		"{\n\"energy\": {\"pue\": 1e309}}",
		`{} {}`,
		`[`,
		`{"Energy": {"PUE": 2}}`,
		`{"energy": {"pue": 1.135, "pue": 1.5}}`,
		`{"Energy":{"Pue":0.5}}`,
		`{"energy":{"pue":1.2,"PUE":2}}`,
		`{"energy":{"gridIntensity":{"a":1,"A":2,"a":3}}}`,
		`{"energy":{"pue":1.2},"ENERGY":{"pue":1.3,"pue":4}}`,
		`{"energy":{"maxWattsPerVCPU":0.5}}`,
		`{"energy":{"pue":1e400}}`,
		`{"energy":{"gridIntensity":{"x":-1e999}}}`,
		`{"energy":{"gridIntensity":{"pue":1}},"pue":3}`,
		`{"prices":{"\u0061sOf":"2027-01-01","asof":"2027-01-02"}}`,
		`{"x":{"y":{"z":[{"pue":1}]}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := Parse("f.json", data)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("%v is not ErrInvalid", err)
			}
			// Every refusal of a file is placed: the shipped defaults are
			// valid, so each problem is at a key of the file.
			if !placed.MatchString(err.Error()) {
				t.Fatalf("%q does not give the file, line and column", err)
			}
			return
		}
		if err := tab.Validate(); err != nil {
			t.Fatalf("accepted an invalid table: %v", err)
		}
		out, err := json.Marshal(tab)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("again.json", out)
		if err != nil {
			t.Fatalf("written table refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(tab, again) {
			t.Fatalf("round trip:\n%+v\n%+v", tab, again)
		}
	})
}
