package cloudevent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"

	stratus "github.com/stratus-run/stratus"
)

// FromJSON parses one structured-mode JSON event, for example the payload of
// a NATS message published by any client, and validates it. maxBytes bounds
// the event's [Event.Size] (non-positive means [DefaultMaxBytes]). Errors
// wrap stratus.ErrInvalid or stratus.ErrTooLarge.
func FromJSON(b []byte, maxBytes int64) (Event, error) {
	maxBytes, _ = limits(maxBytes, 1)
	if int64(len(b)) > jsonLimit(maxBytes, 1) {
		return Event{}, fmt.Errorf("event: %d bytes of JSON exceeds the limit of %d: %w", len(b), jsonLimit(maxBytes, 1), stratus.ErrTooLarge)
	}
	e, err := parseEvent(b, maxBytes)
	if err != nil {
		return Event{}, fmt.Errorf("event: %w", err)
	}
	return e, nil
}

// parseEvent parses and validates one JSON event and checks its size.
func parseEvent(b []byte, maxBytes int64) (Event, error) {
	e, err := decodeEvent(b)
	if err != nil {
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

// decodeEvent maps a JSON object to an Event without validating attribute
// values beyond their JSON types. Member names are case-sensitive and may
// not repeat; null members are unset, except data, where null is an
// explicit null payload.
func decodeEvent(b []byte) (Event, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return Event{}, invalidf("malformed JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Event{}, invalidf("malformed event: want a JSON object")
	}
	var (
		e        Event
		seen     = map[string]bool{}
		dataB64  json.RawMessage
		haveData bool
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Event{}, invalidf("malformed JSON: %v", err)
		}
		name := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Event{}, invalidf("malformed JSON: %v", err)
		}
		if seen[name] {
			return Event{}, invalidf("member %q: repeated", name)
		}
		seen[name] = true
		switch name {
		case "data":
			haveData = true
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return Event{}, invalidf("data: %v", err)
			}
			e.Data = buf.Bytes()
			continue
		case "data_base64":
			dataB64 = raw
			continue
		}
		if string(raw) == "null" {
			continue
		}
		switch name {
		case "specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return Event{}, invalidf("attribute %q: must be a string", name)
			}
			if err := e.setString(name, s); err != nil {
				return Event{}, err
			}
		default:
			v, err := decodeExtension(name, raw)
			if err != nil {
				return Event{}, err
			}
			if e.Extensions == nil {
				e.Extensions = map[string]any{}
			}
			e.Extensions[name] = v
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return Event{}, invalidf("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Event{}, invalidf("malformed JSON: data after the event object")
	}
	if dataB64 != nil && string(dataB64) != "null" {
		if haveData {
			return Event{}, invalidf("data and data_base64: both present")
		}
		var s string
		if err := json.Unmarshal(dataB64, &s); err != nil {
			return Event{}, invalidf("data_base64: must be a string")
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return Event{}, invalidf("data_base64: not valid base64")
		}
		e.DataBase64 = d
	}
	return e, nil
}

// setString sets a core attribute from its string form, as both the JSON
// format and binary-mode headers carry them. Empty optional attributes are
// refused: present means non-empty.
func (e *Event) setString(name, s string) error {
	if s == "" && name != "id" && name != "source" && name != "type" && name != "specversion" {
		return invalidf("attribute %q: must not be empty when present", name)
	}
	switch name {
	case "specversion":
		e.SpecVersion = s
	case "id":
		e.ID = s
	case "source":
		e.Source = s
	case "type":
		e.Type = s
	case "datacontenttype":
		e.DataContentType = s
	case "dataschema":
		e.DataSchema = s
	case "subject":
		e.Subject = s
	case "time":
		t, err := parseTime(s)
		if err != nil {
			return invalidf("attribute %q: %v", "time", err)
		}
		e.Time = t
	}
	return nil
}

// decodeExtension maps a JSON extension value to string, bool or int32.
func decodeExtension(name string, raw json.RawMessage) (any, error) {
	if err := checkExtensionName(name); err != nil {
		return nil, err
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalidf("extension attribute %q: %v", name, err)
		}
		return s, nil
	case c == 't' || c == 'f':
		return c == 't', nil
	case c == '-' || ('0' <= c && c <= '9'):
		n, err := strconv.ParseInt(string(raw), 10, 32)
		if err != nil {
			return nil, invalidf("extension attribute %q: number %s is not a 32-bit integer", name, raw)
		}
		return int32(n), nil
	}
	return nil, invalidf("extension attribute %q: must be a string, boolean or integer", name)
}

// JSON renders e in the structured-mode JSON event format, after checking it
// with [Event.Validate]. Attributes come in a fixed order with extensions
// sorted by name, so equal events render to equal bytes.
func (e Event) JSON() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	return e.appendJSON(nil), nil
}

// MarshalJSON implements json.Marshaler with [Event.JSON], so events embed
// in other JSON documents (a batch delivered to a function, say).
func (e Event) MarshalJSON() ([]byte, error) { return e.JSON() }

// UnmarshalJSON implements json.Unmarshaler: it parses and validates one
// structured-mode event without a size limit (the caller bounds its input).
func (e *Event) UnmarshalJSON(b []byte) error {
	ev, err := decodeEvent(b)
	if err == nil {
		err = ev.Validate()
	}
	if err != nil {
		return fmt.Errorf("event: %w", err)
	}
	*e = ev
	return nil
}

// appendJSON writes a validated event.
func (e Event) appendJSON(b []byte) []byte {
	w := jsonWriter{b: append(b, '{')}
	w.member("specversion", e.SpecVersion)
	w.member("id", e.ID)
	w.member("source", e.Source)
	w.member("type", e.Type)
	if e.DataContentType != "" {
		w.member("datacontenttype", e.DataContentType)
	}
	if e.DataSchema != "" {
		w.member("dataschema", e.DataSchema)
	}
	if e.Subject != "" {
		w.member("subject", e.Subject)
	}
	if !e.Time.IsZero() {
		w.member("time", formatTime(e.Time))
	}
	for _, name := range slices.Sorted(maps.Keys(e.Extensions)) {
		switch v := e.Extensions[name].(type) {
		case string:
			w.member(name, v)
		default: // bool or int32: their canonical strings are JSON literals
			w.key(name)
			w.b = append(w.b, canonicalString(v)...)
		}
	}
	switch {
	case e.Data != nil:
		w.key("data")
		buf := bytes.NewBuffer(w.b)
		if err := json.Compact(buf, e.Data); err != nil {
			panic("cloudevent: data was validated: " + err.Error())
		}
		w.b = buf.Bytes()
	case e.DataBase64 != nil:
		w.member("data_base64", base64.StdEncoding.EncodeToString(e.DataBase64))
	}
	return append(w.b, '}')
}

type jsonWriter struct{ b []byte }

func (w *jsonWriter) key(name string) {
	if len(w.b) > 0 && w.b[len(w.b)-1] != '{' && w.b[len(w.b)-1] != '[' {
		w.b = append(w.b, ',')
	}
	w.b = appendString(w.b, name)
	w.b = append(w.b, ':')
}

func (w *jsonWriter) member(name, v string) {
	w.key(name)
	w.b = appendString(w.b, v)
}

// appendString appends s as a JSON string without HTML escaping.
func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic("cloudevent: encode string: " + err.Error()) // strings always encode
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// BatchJSON renders events in the JSON batch format (a JSON array of
// structured-mode events). An empty batch renders as [].
func BatchJSON(events []Event) ([]byte, error) {
	b := []byte{'['}
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("batch event %d: %w", i, err)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = e.appendJSON(b)
	}
	return append(b, ']'), nil
}

// parseBatch parses a JSON batch of at most maxBatch events, each at most
// maxBytes. It refuses the whole batch if any event is bad, naming its index.
func parseBatch(b []byte, maxBytes int64, maxBatch int) ([]Event, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, invalidf("batch: malformed JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, invalidf("batch: want a JSON array of events")
	}
	events := []Event{}
	for i := 0; dec.More(); i++ {
		if i >= maxBatch {
			return nil, fmt.Errorf("batch: more than %d events: %w", maxBatch, stratus.ErrTooLarge)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalidf("batch event %d: malformed JSON: %v", i, err)
		}
		e, err := parseEvent(raw, maxBytes)
		if err != nil {
			return nil, fmt.Errorf("batch event %d: %w", i, err)
		}
		events = append(events, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, invalidf("batch: malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalidf("batch: malformed JSON: data after the array")
	}
	return events, nil
}

// limits applies the defaults for non-positive limits.
func limits(maxBytes int64, maxBatch int) (int64, int) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return maxBytes, max(maxBatch, 1)
}

// jsonLimit is the most JSON read for n events of at most maxBytes each:
// twice the event limit per event, for base64 and escaping.
func jsonLimit(maxBytes int64, n int) int64 {
	const maxInt64 = 1<<63 - 1
	if maxBytes > maxInt64/2/int64(n) {
		return maxInt64
	}
	return 2 * maxBytes * int64(n)
}

// isInvalidOrTooLarge reports whether err is one of this package's kinds.
func isInvalidOrTooLarge(err error) bool {
	return errors.Is(err, stratus.ErrInvalid) || errors.Is(err, stratus.ErrTooLarge)
}
