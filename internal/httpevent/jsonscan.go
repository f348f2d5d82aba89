package httpevent

import (
	"bytes"
	"encoding/json"
)

// This file walks JSON documents that json.Valid has accepted, handing out
// sub-slices of the input instead of decoding into maps: keys are compared
// case-sensitively (as Lambda does, unlike encoding/json's struct decoding)
// and large bodies are never copied.

// objectIter iterates over the members of a valid JSON object.
type objectIter struct {
	data []byte
	pos  int
}

// newObjectIter returns an iterator over obj, a valid JSON object without
// leading white space.
func newObjectIter(obj []byte) objectIter {
	return objectIter{data: obj, pos: 1}
}

// next returns the next member's key (quoted, as in the input) and value.
func (it *objectIter) next() (key, val []byte, ok bool) {
	d := it.data
	i := skipSpace(d, it.pos)
	if i >= len(d) || d[i] == '}' {
		return nil, nil, false
	}
	if d[i] == ',' {
		i = skipSpace(d, i+1)
	}
	end := skipString(d, i)
	key = d[i:end]
	i = skipSpace(d, end)
	i = skipSpace(d, i+1) // ':'
	end = skipValue(d, i)
	val = d[i:end]
	it.pos = end
	return key, val, true
}

// arrayIter iterates over the elements of a valid JSON array.
type arrayIter struct {
	data []byte
	pos  int
}

func newArrayIter(arr []byte) arrayIter {
	return arrayIter{data: arr, pos: 1}
}

func (it *arrayIter) next() (val []byte, ok bool) {
	d := it.data
	i := skipSpace(d, it.pos)
	if i >= len(d) || d[i] == ']' {
		return nil, false
	}
	if d[i] == ',' {
		i = skipSpace(d, i+1)
	}
	end := skipValue(d, i)
	it.pos = end
	return d[i:end], true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

func skipSpace(d []byte, i int) int {
	for i < len(d) && isSpace(d[i]) {
		i++
	}
	return i
}

// skipString returns the index after the string starting at d[i] == '"'.
func skipString(d []byte, i int) int {
	for i++; i < len(d); i++ {
		switch d[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(d)
}

// skipValue returns the index after the value starting at d[i].
func skipValue(d []byte, i int) int {
	if i >= len(d) {
		return len(d)
	}
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		depth := 0
		for i < len(d) {
			switch d[i] {
			case '"':
				i = skipString(d, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(d)
	}
	for i < len(d) {
		switch c := d[i]; {
		case c == ',' || c == '}' || c == ']' || isSpace(c):
			return i
		}
		i++
	}
	return len(d)
}

// unquoteBytes returns the content of the valid JSON string s, a sub-slice
// of s when it has no escapes.
func unquoteBytes(s []byte) []byte {
	if bytes.IndexByte(s, '\\') < 0 {
		return s[1 : len(s)-1]
	}
	var u string
	if json.Unmarshal(s, &u) != nil {
		return nil // unreachable for valid input
	}
	return []byte(u)
}

// unquote returns the content of the valid JSON string s.
func unquote(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s[1 : len(s)-1])
	}
	var u string
	if json.Unmarshal(s, &u) != nil {
		return "" // unreachable for valid input
	}
	return u
}
