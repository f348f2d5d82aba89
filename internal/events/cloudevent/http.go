package cloudevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	stratus "github.com/stratus-run/stratus"
)

// Media types of the JSON event formats.
const (
	ContentTypeJSON      = "application/cloudevents+json"
	ContentTypeBatchJSON = "application/cloudevents-batch+json"
)

// FromRequest parses the events in r, whose content mode the Content-Type
// header tells (HTTP protocol binding, section 3): application/cloudevents+json
// is one structured-mode event, application/cloudevents-batch+json a batch of
// at most maxBatch events, and anything else (or no Content-Type) one
// binary-mode event with its attributes in ce-* headers and its data in the
// body. Other application/cloudevents formats are refused.
//
// maxBytes bounds each event's [Event.Size] (non-positive means
// [DefaultMaxBytes]); the body is bounded to maxBytes in binary mode and to
// twice maxBytes per event in the JSON modes. FromRequest reads r.Body but
// does not close it. An empty batch yields no events and no error. Errors wrap
// stratus.ErrInvalid, naming the attribute (and the batch index), or
// stratus.ErrTooLarge; a failure to read the body is returned as it is.
func FromRequest(r *http.Request, maxBytes int64, maxBatch int) ([]Event, error) {
	maxBytes, maxBatch = limits(maxBytes, maxBatch)
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct != "" && err != nil {
		return nil, invalidf("event: Content-Type %q: not a media type", ct)
	}
	if cs, ok := params["charset"]; ok && strings.HasPrefix(mt, "application/cloudevents") && !strings.EqualFold(cs, "utf-8") {
		return nil, invalidf("event: Content-Type %q: JSON event formats must be UTF-8", ct)
	}
	switch {
	case mt == ContentTypeBatchJSON:
		body, err := readBody(r, jsonLimit(maxBytes, maxBatch))
		if err != nil {
			return nil, fmt.Errorf("batch: %w", err)
		}
		return parseBatch(body, maxBytes, maxBatch)
	case mt == ContentTypeJSON:
		body, err := readBody(r, jsonLimit(maxBytes, 1))
		if err != nil {
			return nil, fmt.Errorf("event: %w", err)
		}
		e, err := parseEvent(body, maxBytes)
		if err != nil {
			return nil, fmt.Errorf("event: %w", err)
		}
		return []Event{e}, nil
	case strings.HasPrefix(mt, "application/cloudevents"):
		return nil, invalidf("event: unsupported event format %q (want %s or %s)", mt, ContentTypeJSON, ContentTypeBatchJSON)
	}
	e, err := fromBinary(r, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	return []Event{e}, nil
}

// readBody reads r's body, refusing more than limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, fmt.Errorf("body of %d bytes exceeds the limit of %d: %w", r.ContentLength, limit, stratus.ErrTooLarge)
	}
	lr := io.LimitReader(r.Body, limit+1)
	if limit == 1<<63-1 {
		lr = r.Body
	}
	b, err := io.ReadAll(lr)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, fmt.Errorf("body exceeds the limit of %d bytes: %w", mbe.Limit, stratus.ErrTooLarge)
	case err != nil:
		return nil, fmt.Errorf("read body: %w", err)
	case int64(len(b)) > limit:
		return nil, fmt.Errorf("body exceeds the limit of %d bytes: %w", limit, stratus.ErrTooLarge)
	}
	return b, nil
}

// fromBinary maps a binary-mode request: ce-* headers are attributes,
// Content-Type is datacontenttype, the body is data.
func fromBinary(r *http.Request, maxBytes int64) (Event, error) {
	var e Event
	found := false
	seen := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		lk := strings.ToLower(k)
		name, ok := strings.CutPrefix(lk, "ce-")
		if !ok {
			continue
		}
		found = true
		vs := r.Header[k]
		if len(vs) != 1 || seen[name] {
			return Event{}, invalidf("header %s: repeated", lk)
		}
		seen[name] = true
		if name == "datacontenttype" {
			return Event{}, invalidf("header %s: not allowed in binary mode (Content-Type carries datacontenttype)", lk)
		}
		v, err := decodeHeaderValue(vs[0])
		if err != nil {
			return Event{}, invalidf("header %s: %v", lk, err)
		}
		switch name {
		case "specversion", "id", "source", "type", "dataschema", "subject", "time":
			if err := e.setString(name, v); err != nil {
				return Event{}, fmt.Errorf("header %s: %w", lk, err)
			}
		default:
			if err := checkExtensionName(name); err != nil {
				return Event{}, fmt.Errorf("header %s: %w", lk, err)
			}
			if e.Extensions == nil {
				e.Extensions = map[string]any{}
			}
			e.Extensions[name] = v
		}
	}
	if !found {
		return Event{}, invalidf("no ce-* headers: send a binary-mode event (ce-specversion, ce-id, ce-source, ce-type headers) or Content-Type %s", ContentTypeJSON)
	}
	e.DataContentType = r.Header.Get("Content-Type")
	if err := e.Validate(); err != nil { // attributes first: cheaper, and a clearer error
		return Event{}, err
	}
	body, err := readBody(r, maxBytes)
	if err != nil {
		return Event{}, err
	}
	if err := e.setBinaryData(body); err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	if err := checkSize(e, maxBytes); err != nil {
		return Event{}, err
	}
	return e, nil
}

// setBinaryData stores a binary-mode body: as JSON data when the content
// type declares JSON (refusing a body that is not JSON), as a data string
// when it declares UTF-8 text, and as data_base64 otherwise. With no
// Content-Type, a JSON body is JSON data and any other body is binary.
func (e *Event) setBinaryData(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	var buf bytes.Buffer
	switch {
	case e.DataContentType == "":
		if json.Compact(&buf, body) == nil {
			e.Data = buf.Bytes()
		} else {
			e.DataBase64 = body
		}
	case e.jsonData():
		if err := json.Compact(&buf, body); err != nil {
			return invalidf("data: body is not valid JSON but Content-Type is %q", e.DataContentType)
		}
		e.Data = buf.Bytes()
	case textual(e.DataContentType) && utf8.Valid(body):
		e.Data = appendString(nil, string(body))
	default:
		e.DataBase64 = body
	}
	return nil
}

// textual reports whether a media type names text: text/*, XML, or any type
// with a charset parameter.
func textual(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if _, ok := params["charset"]; ok {
		return true
	}
	_, sub, _ := strings.Cut(mt, "/")
	return strings.HasPrefix(mt, "text/") || sub == "xml" || strings.HasSuffix(sub, "+xml") ||
		mt == "application/javascript" || mt == "application/x-www-form-urlencoded"
}

// WriteRequest sets r's body and headers to deliver e in structured mode:
// Content-Type application/cloudevents+json and the JSON event as the body.
// Structured mode is the delivery default because it keeps the JSON types of
// extension attributes, which binary-mode headers turn into strings. Other
// headers of r are left alone.
func WriteRequest(r *http.Request, e Event) error {
	b, err := e.JSON()
	if err != nil {
		return err
	}
	setBody(r, b)
	r.Header.Set("Content-Type", ContentTypeJSON+"; charset=utf-8")
	return nil
}

// WriteBatchRequest sets r's body and headers to deliver events in batched
// mode (application/cloudevents-batch+json).
func WriteBatchRequest(r *http.Request, events []Event) error {
	b, err := BatchJSON(events)
	if err != nil {
		return err
	}
	setBody(r, b)
	r.Header.Set("Content-Type", ContentTypeBatchJSON+"; charset=utf-8")
	return nil
}

// WriteBinaryRequest sets r's body and headers to deliver e in binary mode:
// each attribute as a ce-* header (percent-encoded as the HTTP binding
// requires), datacontenttype as Content-Type (application/json when e has
// JSON data and no content type) and [Event.DataBytes] as the body. Extension
// values become their canonical strings. Existing ce-* headers of r are
// removed.
func WriteBinaryRequest(r *http.Request, e Event) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("event: %w", err)
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	for k := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "ce-") {
			delete(r.Header, k)
		}
	}
	set := func(name, v string) { r.Header.Set("ce-"+name, encodeHeaderValue(v)) }
	set("specversion", e.SpecVersion)
	set("id", e.ID)
	set("source", e.Source)
	set("type", e.Type)
	if e.DataSchema != "" {
		set("dataschema", e.DataSchema)
	}
	if e.Subject != "" {
		set("subject", e.Subject)
	}
	if !e.Time.IsZero() {
		set("time", formatTime(e.Time))
	}
	for name, v := range e.Extensions {
		set(name, canonicalString(v))
	}
	switch {
	case e.DataContentType != "":
		r.Header.Set("Content-Type", e.DataContentType)
	case e.Data != nil:
		r.Header.Set("Content-Type", "application/json")
	default:
		r.Header.Del("Content-Type")
	}
	setBody(r, e.DataBytes())
	return nil
}

func setBody(r *http.Request, b []byte) {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.ContentLength = int64(len(b))
	if len(b) == 0 {
		r.Body, r.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// encodeHeaderValue percent-encodes a string for an HTTP header (HTTP
// binding, section 3.1.3.2): space, double quote, percent and every byte
// outside printable ASCII become %XY.
func encodeHeaderValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodeHeaderValue undoes RFC 7230 double-quoted strings, then performs one
// round of percent-decoding, and requires the result to be valid UTF-8.
func decodeHeaderValue(v string) (string, error) {
	var unq []byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '"' {
			unq = append(unq, c)
			continue
		}
		closed := false
		for i++; i < len(v); i++ {
			c := v[i]
			if c == '"' {
				closed = true
				break
			}
			if c == '\\' {
				i++
				if i == len(v) {
					break
				}
				c = v[i]
			}
			unq = append(unq, c)
		}
		if !closed {
			return "", errors.New("unterminated quoted string")
		}
	}
	out := make([]byte, 0, len(unq))
	for i := 0; i < len(unq); i++ {
		c := unq[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		if i+2 >= len(unq) || !isHex(unq[i+1]) || !isHex(unq[i+2]) {
			return "", fmt.Errorf("malformed percent-encoding at byte %d", i)
		}
		out = append(out, unhex(unq[i+1])<<4|unhex(unq[i+2]))
		i += 2
	}
	if !utf8.Valid(out) {
		return "", errors.New("percent-decoded value is not valid UTF-8")
	}
	return string(out), nil
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
