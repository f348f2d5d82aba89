package meter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// keyAt is one object key of a table file and where it is.
type keyAt struct {
	// path is the table field the key sets: the fields' JSON names as
	// Table's tags spell them, then a map's key as written; nil for a
	// key that is no field (and for every key inside its value).
	path []string
	name string // as written, unescaped
	off  int    // of its opening quote
}

// tableKeys returns the object keys of the JSON value at the start of
// data in order, each with the table field it sets. Struct fields match
// case-insensitively, as encoding/json matches them; a map's keys are
// taken as written. At a syntax error it returns the keys before it.
func tableKeys(data []byte) []keyAt {
	s := keyScanner{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	s.value(reflect.TypeFor[Table](), nil, 0)
	return s.keys
}

type keyScanner struct {
	data []byte
	dec  *json.Decoder
	keys []keyAt
}

// maxKeyDepth bounds the nesting the scanner follows: deeper values are
// skipped (the table has three levels).
const maxKeyDepth = 64

// value reads one JSON value of type t (nil: no table field) at path,
// keeping the keys of its objects.
func (s *keyScanner) value(t reflect.Type, path []string, depth int) bool {
	tok, err := s.dec.Token()
	if err != nil {
		return false
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return true // a scalar
	}
	if depth >= maxKeyDepth {
		return s.skip()
	}
	for s.dec.More() {
		var elem reflect.Type
		var at []string
		if d == '{' {
			off := s.keyStart()
			tok, err := s.dec.Token()
			if err != nil {
				return false
			}
			name, _ := tok.(string)
			if t != nil {
				switch t.Kind() {
				case reflect.Struct:
					if f, ok := fieldOf(t, name); ok {
						at, elem = append(slices.Clip(path), jsonName(f)), f.Type
					}
				case reflect.Map:
					at, elem = append(slices.Clip(path), name), t.Elem()
				}
			}
			s.keys = append(s.keys, keyAt{path: at, name: name, off: off})
		}
		if !s.value(elem, at, depth+1) {
			return false
		}
	}
	_, err = s.dec.Token() // the closing delimiter
	return err == nil
}

// skip reads the rest of the object or array just opened.
func (s *keyScanner) skip() bool {
	for n := 1; n > 0; {
		tok, err := s.dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			n++
		case json.Delim('}'), json.Delim(']'):
			n--
		}
	}
	return true
}

// keyStart is the offset of the next key's opening quote: the decoder
// stands after the previous token, and only space and a comma come
// before a key.
func (s *keyScanner) keyStart() int {
	i := int(s.dec.InputOffset())
	for i < len(s.data) && (isSpace(s.data[i]) || s.data[i] == ',') {
		i++
	}
	return i
}

// fieldOf is the field of struct type t that JSON key name sets: the
// one whose name is name, else the first whose name matches it
// case-insensitively, as encoding/json chooses.
func fieldOf(t reflect.Type, name string) (reflect.StructField, bool) {
	var folded *reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		n := jsonName(f)
		if n == "-" || !f.IsExported() {
			continue
		}
		if n == name {
			return f, true
		}
		if folded == nil && strings.EqualFold(n, name) {
			folded = &f
		}
	}
	if folded != nil {
		return *folded, true
	}
	return reflect.StructField{}, false
}

func jsonName(f reflect.StructField) string {
	n, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if n == "" {
		return f.Name
	}
	return n
}

// findPath returns the offset of the key that sets the field at path,
// or -1.
func findPath(keys []keyAt, path []string) int {
	for _, k := range keys {
		if slices.Equal(k.path, path) {
			return k.off
		}
	}
	return -1
}

// findUnknown returns the offset of the first key named name that is
// no field of the table, or -1.
func findUnknown(keys []keyAt, name string) int {
	for _, k := range keys {
		if k.path == nil && k.name == name {
			return k.off
		}
	}
	return -1
}

// fieldName is how messages name the field at path: energy.pue,
// energy.gridIntensity["eu-west-1"].
func fieldName(path []string) string {
	var b strings.Builder
	for i, p := range path {
		switch {
		case i > 0 && path[i-1] == "gridIntensity":
			b.WriteString("[" + strconv.Quote(p) + "]")
		case i > 0:
			b.WriteString("." + p)
		default:
			b.WriteString(p)
		}
	}
	return b.String()
}

// duplicates reports the keys that set a field an earlier key already
// set (encoding/json would keep the last silently), each at its second
// place, as "NAME:LINE:COL: field: what"; nil when there are none. A
// duplicate inside a duplicated key's value is not reported again.
func duplicates(name string, data []byte, keys []keyAt) error {
	first := map[string]keyAt{}
	var reported [][]string
	var msgs []string
	for _, k := range keys {
		if k.path == nil {
			continue
		}
		id := strings.Join(k.path, "\x00")
		f, seen := first[id]
		if !seen {
			first[id] = k
			continue
		}
		if slices.ContainsFunc(reported, func(p []string) bool { return hasPrefix(k.path, p) }) {
			continue
		}
		reported = append(reported, k.path)
		line, col := position(data, k.off)
		fline, fcol := position(data, f.off)
		what := fmt.Sprintf("given a second time (first at %d:%d)", fline, fcol)
		if k.name != f.name {
			what = fmt.Sprintf("%q given a second time (first as %q at %d:%d)", k.name, f.name, fline, fcol)
		}
		msgs = append(msgs, fmt.Sprintf("%s:%d:%d: %s: %s: keep one", name, line, col, fieldName(k.path), what))
	}
	if len(msgs) == 0 {
		return nil
	}
	return &parseError{msg: strings.Join(msgs, "; ")}
}

func hasPrefix(path, prefix []string) bool {
	return len(path) >= len(prefix) && slices.Equal(path[:len(prefix)], prefix)
}
