package knative

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// maxJSONDepth bounds the nesting of a JSON manifest.
const maxJSONDepth = 100

// isJSON tells whether data is a JSON document: its first character
// other than white space opens an object.
func isJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// jsonDocument parses a JSON manifest into the nodes a YAML one gives,
// keys in their order (so that a key given twice is seen) and lines
// counted, with JSON's own rules (YAML's parser refuses some of JSON's
// escapes, such as \/).
func jsonDocument(data []byte) (*yaml.Node, *FieldError) {
	p := &jsonParser{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	p.dec.UseNumber()
	n, err := p.value(0)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, &FieldError{Line: p.line(), Msg: "malformed JSON: " + err.Error()}
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &FieldError{Line: p.line(), Msg: "malformed JSON: more after the object"}
	}
	return n, nil
}

type jsonParser struct {
	dec  *json.Decoder
	data []byte
}

// line is the line of the decoder's next token, 1-based.
func (p *jsonParser) line() int {
	off := min(int(p.dec.InputOffset()), len(p.data))
	for off < len(p.data) && bytes.IndexByte([]byte(" \t\r\n,:"), p.data[off]) >= 0 {
		off++
	}
	return bytes.Count(p.data[:off], []byte("\n")) + 1
}

func (p *jsonParser) value(depth int) (*yaml.Node, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested more than %d deep", maxJSONDepth)
	}
	line := p.line()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: line}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
			for p.dec.More() {
				kline := p.line()
				k, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				ks, ok := k.(string)
				if !ok {
					return nil, fmt.Errorf("a key must be a string")
				}
				val, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ks, Line: kline}, val)
			}
		case '[':
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
			for p.dec.More() {
				val, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, val)
			}
		default:
			return nil, fmt.Errorf("unexpected %q", v)
		}
		if _, err := p.dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
	case string:
		n.Tag, n.Value = "!!str", v
	case json.Number:
		n.Tag, n.Value = "!!float", v.String()
		if _, err := strconv.ParseInt(v.String(), 10, 64); err == nil {
			n.Tag = "!!int"
		}
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(v)
	case nil:
		n.Tag, n.Value = "!!null", "null"
	}
	return n, nil
}
