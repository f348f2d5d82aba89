package meter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// The defaults, as docs/metering.md gives them with their sources. They
// were read on DefaultsAsOf.
const (
	DefaultsAsOf = "2026-12-06"

	// LambdaMBPerVCPU is the memory size at which a Lambda function has
	// the equivalent of one vCPU; CPU is allocated in proportion to
	// memory below and above it.
	LambdaMBPerVCPU = stratus.MBPerVCPU

	// Embodied emissions (SCI's M), following Cloud Carbon Footprint's
	// method: a server's total embodied emissions, shared over its
	// expected life and its vCPUs.
	embodiedServerKg   = 1200.0
	embodiedLifeHours  = 4 * 8760.0 // 35,040 h, CCF's SERVER_EXPECTED_LIFESPAN
	embodiedServerVCPU = 48.0
)

const defaultSource = "AWS Lambda pricing (us-east-1, first tier) https://aws.amazon.com/lambda/pricing/; " +
	"Google Cloud Run pricing (Tier 1) https://cloud.google.com/run/pricing; " +
	"Cloud Carbon Footprint methodology https://www.cloudcarbonfootprint.org/docs/methodology/ " +
	"(see docs/metering.md)"

// Default returns the documented default table (see docs/metering.md).
// Each call returns a table of its own (its map is not shared).
func Default() Table {
	return Table{
		Prices: Prices{
			AsOf:                  DefaultsAsOf,
			Source:                defaultSource,
			LambdaGBSecondX86:     0.0000166667,
			LambdaGBSecondArm:     0.0000133334,
			LambdaPerMillionReqs:  0.20,
			RunRequestVCPUSecond:  0.000024,
			RunRequestGiBSecond:   0.0000025,
			RunPerMillionReqs:     0.40,
			RunInstanceVCPUSecond: 0.000018,
			RunInstanceGiBSecond:  0.000002,
		},
		Energy: Model{
			MinWattsPerVCPU:      0.74,
			MaxWattsPerVCPU:      3.5,
			MemoryWattsPerGB:     0.392,
			PUE:                  1.135,
			GridIntensity:        defaultIntensities(),
			DefaultIntensity:     481,
			EmbodiedGPerVCPUHour: embodiedServerKg * 1000 / (embodiedLifeHours * embodiedServerVCPU),
		},
	}
}

// defaultIntensities are grid intensities in gCO2e/kWh: AWS regions as
// Cloud Carbon Footprint's methodology (Appendix V) gives them, and a few
// countries (ISO 3166 codes) from Ember's 2023 figures.
func defaultIntensities() map[string]float64 {
	return map[string]float64{
		// US: EPA eGRID2020, by NERC region.
		"us-east-1":     379.069, // SERC
		"us-east-2":     410.608, // RFC
		"us-west-1":     322.167, // WECC
		"us-west-2":     322.167, // WECC
		"us-gov-east-1": 379.069, // SERC
		"us-gov-west-1": 322.167, // WECC
		// carbonfootprint.com, 2021 electricity factors.
		"af-south-1":     900.6,
		"ap-east-1":      710,
		"ap-south-1":     708.2,
		"ap-northeast-1": 465.8,
		"ap-northeast-2": 415.6,
		"ap-northeast-3": 465.8,
		"ap-southeast-1": 408,
		"ap-southeast-2": 760,
		"ca-central-1":   120,
		"cn-north-1":     537.4,
		"cn-northwest-1": 537.4,
		"me-south-1":     505.9,
		"sa-east-1":      61.7,
		// EEA.
		"eu-central-1": 311,
		"eu-west-1":    278.6,
		"eu-west-2":    225,
		"eu-west-3":    51.1,
		"eu-south-1":   213.4,
		"eu-north-1":   8.8,
		// Countries: Ember, 2023 (via Our World in Data).
		"AT": 111,
		"BE": 138,
		"BR": 98,
		"CA": 170,
		"CN": 582,
		"DE": 381,
		"DK": 152,
		"FI": 79,
		"FR": 56,
		"IE": 291,
		"IN": 713,
	}
}

// Load reads a table from a JSON file over the defaults; an error names
// the file and the line.
func Load(path string) (Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Table{}, fmt.Errorf("meter table: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a table from JSON over the defaults: fields present
// override the defaults, gridIntensity's entries are added to the
// default map (replacing those of the same region), unknown fields and
// a field given twice are refused. Keys match the fields
// case-insensitively, as encoding/json matches them, so "PUE" and "pue"
// in one object are the same field given twice. The table is then
// validated. An error wraps stratus.ErrInvalid and reads
// "NAME:LINE:COL: what" where the place is known.
func Parse(name string, data []byte) (Table, error) {
	t := Default()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Table{}, decodeError(name, data, err)
	}
	end := int(dec.InputOffset())
	if rest := bytes.TrimLeft(data[end:], " \t\r\n"); len(rest) > 0 {
		return Table{}, posError(name, data, len(data)-len(rest), "unexpected data after the table's object")
	}
	keys := tableKeys(data[:end])
	if err := duplicates(name, data, keys); err != nil {
		return Table{}, err
	}
	if t.Energy.GridIntensity == nil { // "gridIntensity": null
		t.Energy.GridIntensity = defaultIntensities()
	}
	if err := t.Validate(); err != nil {
		var ve *validationError
		if errors.As(err, &ve) {
			return Table{}, ve.in(name, data, keys)
		}
		return Table{}, err
	}
	return t, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// decodeError turns a decoder's error into "NAME:LINE:COL: what".
func decodeError(name string, data []byte, err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return posError(name, data, len(data), "empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return posError(name, data, len(data), "unexpected end of the file")
	case errors.As(err, &se):
		return posError(name, data, int(se.Offset)-1, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		what := fmt.Sprintf("%s: want %s, not %s", te.Field, typeName(te.Type.Kind().String()), te.Value)
		if n, ok := strings.CutPrefix(te.Value, "number "); ok && te.Type.Kind() == reflect.Float64 {
			// A number the field's type cannot hold, such as 1e400.
			what = fmt.Sprintf("%s: %s is out of range: it must be within ±1.8e308", te.Field, n)
		}
		if te.Field == "" {
			what = fmt.Sprintf("want a JSON object, not %s", te.Value)
		}
		return posError(name, data, valueStart(data, int(te.Offset)), what)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if field, ok := strings.CutPrefix(msg, "unknown field "); ok {
		if f, err := strconv.Unquote(field); err == nil {
			if off := findUnknown(tableKeys(data), f); off >= 0 {
				return posError(name, data, off, msg)
			}
		}
	}
	return &parseError{msg: name + ": " + msg}
}

// valueStart returns the offset of the start of the JSON value that ends
// at end (the decoder reports a type error's place after the value).
func valueStart(data []byte, end int) int {
	end = min(end, len(data))
	if end <= 0 {
		return 0
	}
	i := end - 1
	switch c := data[i]; {
	case c == '"':
		for i--; i >= 0; i-- {
			if data[i] == '"' && (i == 0 || data[i-1] != '\\') {
				return i
			}
		}
		return end - 1
	case isSpace(c) || strings.IndexByte("{}[],:", c) >= 0:
		return i
	}
	for i > 0 && !isSpace(data[i-1]) && strings.IndexByte("{}[],:", data[i-1]) < 0 {
		i--
	}
	return i
}

func typeName(kind string) string {
	switch kind {
	case "float64":
		return "a number"
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	}
	return kind
}

// position returns the 1-based line and column (in bytes) of offset off
// in data.
func position(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	line = 1 + bytes.Count(data[:off], []byte("\n"))
	col = off + 1
	if nl := bytes.LastIndexByte(data[:off], '\n'); nl >= 0 {
		col = off - nl
	}
	return line, col
}

func posError(name string, data []byte, off int, what string) error {
	line, col := position(data, off)
	return &parseError{msg: fmt.Sprintf("%s:%d:%d: %s", name, line, col, what)}
}

// parseError is a table file that could not be read; it is
// stratus.ErrInvalid.
type parseError struct{ msg string }

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return stratus.ErrInvalid }

// Validate reports a negative or missing coefficient: negative prices,
// coefficients or intensities, a PUE below 1, minimum watts above
// maximum watts, numbers that are not finite, an asOf that is not a
// date. The error wraps stratus.ErrInvalid and names each field.
func (t Table) Validate() error {
	var ve validationError
	p, e := t.Prices, t.Energy
	if p.AsOf != "" {
		if _, err := time.Parse(time.DateOnly, p.AsOf); err != nil {
			ve.add(fmt.Sprintf("%q is not a date (YYYY-MM-DD)", p.AsOf), "prices", "asOf")
		}
	}
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"lambdaGBSecondX86", p.LambdaGBSecondX86},
		{"lambdaGBSecondArm", p.LambdaGBSecondArm},
		{"lambdaPerMillionRequests", p.LambdaPerMillionReqs},
		{"cloudRunRequestVCPUSecond", p.RunRequestVCPUSecond},
		{"cloudRunRequestGiBSecond", p.RunRequestGiBSecond},
		{"cloudRunPerMillionRequests", p.RunPerMillionReqs},
		{"cloudRunInstanceVCPUSecond", p.RunInstanceVCPUSecond},
		{"cloudRunInstanceGiBSecond", p.RunInstanceGiBSecond},
	} {
		ve.nonNegative(f.v, "prices", f.key)
	}
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"minWattsPerVCPU", e.MinWattsPerVCPU},
		{"maxWattsPerVCPU", e.MaxWattsPerVCPU},
		{"memoryWattsPerGB", e.MemoryWattsPerGB},
		{"defaultIntensity", e.DefaultIntensity},
		{"embodiedGPerVCPUHour", e.EmbodiedGPerVCPUHour},
	} {
		ve.nonNegative(f.v, "energy", f.key)
	}
	switch {
	case !finite(e.PUE):
		ve.add(fmt.Sprintf("%v is not a number", e.PUE), "energy", "pue")
	case e.PUE < 1:
		ve.add(fmt.Sprintf("%v is below 1", e.PUE), "energy", "pue")
	}
	if finite(e.MinWattsPerVCPU) && finite(e.MaxWattsPerVCPU) && e.MinWattsPerVCPU > e.MaxWattsPerVCPU {
		ve.add(fmt.Sprintf("%v is above energy.maxWattsPerVCPU (%v)", e.MinWattsPerVCPU, e.MaxWattsPerVCPU), "energy", "minWattsPerVCPU")
		// In a file that gives only the maximum, the minimum is the
		// default: the problem is the key that is there.
		last := &ve.problems[len(ve.problems)-1]
		last.alt = &problem{
			path: []string{"energy", "maxWattsPerVCPU"},
			what: fmt.Sprintf("%v is below the default energy.minWattsPerVCPU (%v): give a minWattsPerVCPU of at most %v as well",
				e.MaxWattsPerVCPU, e.MinWattsPerVCPU, e.MaxWattsPerVCPU),
		}
	}
	regions := make([]string, 0, len(e.GridIntensity))
	for r := range e.GridIntensity {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	for _, r := range regions {
		ve.nonNegative(e.GridIntensity[r], "energy", "gridIntensity", r)
	}
	if len(ve.problems) == 0 {
		return nil
	}
	return &ve
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// validationError lists a table's invalid fields; it is
// stratus.ErrInvalid.
type validationError struct{ problems []problem }

type problem struct {
	path []string // the field's, e.g. energy, pue: named in the message, found in a file
	what string
	// alt is the same problem told at another field, for a file in which
	// path's key is not and alt's is.
	alt *problem
}

func (ve *validationError) add(what string, path ...string) {
	ve.problems = append(ve.problems, problem{path: path, what: what})
}

func (ve *validationError) nonNegative(v float64, path ...string) {
	switch {
	case !finite(v):
		ve.add(fmt.Sprintf("%v is not a number", v), path...)
	case v < 0:
		ve.add(fmt.Sprintf("%v is negative", v), path...)
	}
}

func (ve *validationError) Error() string {
	s := make([]string, len(ve.problems))
	for i, p := range ve.problems {
		s[i] = fieldName(p.path) + ": " + p.what
	}
	return strings.Join(s, "; ")
}

func (ve *validationError) Unwrap() error { return stratus.ErrInvalid }

// in places ve's problems in the file name whose text is data and
// whose keys are keys: where the field's key is in the file,
// "NAME:LINE:COL: field: what", else "NAME: field: what" (a default
// that is itself wrong, which cannot happen with the shipped defaults).
func (ve *validationError) in(name string, data []byte, keys []keyAt) error {
	s := make([]string, len(ve.problems))
	for i, p := range ve.problems {
		off := findPath(keys, p.path)
		if off < 0 && p.alt != nil {
			if alt := findPath(keys, p.alt.path); alt >= 0 {
				p, off = *p.alt, alt
			}
		}
		s[i] = name + ": " + fieldName(p.path) + ": " + p.what
		if off >= 0 {
			line, col := position(data, off)
			s[i] = fmt.Sprintf("%s:%d:%d: %s: %s", name, line, col, fieldName(p.path), p.what)
		}
	}
	return &parseError{msg: strings.Join(s, "; ")}
}
