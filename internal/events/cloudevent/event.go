// Package cloudevent turns HTTP requests and JSON messages into validated
// CloudEvents 1.0 and renders them back for delivery.
//
// It serves two edges of the event system. Publishing: [FromRequest] reads
// POST /v1/topics/NAME/events in any of the three content modes of the HTTP
// protocol binding (binary with ce-* headers, structured with
// application/cloudevents+json, batched with
// application/cloudevents-batch+json), and [FromJSON] reads one
// structured-mode event, as any NATS client publishes it. Delivery:
// [WriteRequest] renders an event in structured mode for an HTTP subscriber
// (so extension attribute types survive), [WriteBinaryRequest] in binary mode,
// and [WriteBatchRequest] renders a batch. [ParseFilter] parses a subscription
// filter ("type=EXACT" or "source-prefix=PREFIX").
//
// Validation follows the core spec: specversion is "1.0"; id and type are
// non-empty strings; source is a URI-reference; dataschema an absolute URI;
// subject, when present, non-empty; time RFC 3339; datacontenttype a media
// type; extension names are 1–20 lower-case letters or digits and values are
// strings, booleans or 32-bit integers; string values contain no control
// characters or Unicode noncharacters; data and data_base64 are not both set.
// A batch is accepted whole or refused whole, and the error names the index of
// the first bad event. Every refusal wraps [stratus.ErrInvalid] or
// [stratus.ErrTooLarge].
//
// Size: an event's size ([Event.Size]) is its data bytes plus the names and
// canonical string values of its attributes, the same whatever mode carried
// it. While reading, binary-mode bodies are bounded by the per-event limit
// and JSON bodies by twice that per event, which leaves room for base64 and
// escaping; the exact per-event limit is then checked on each event.
//
// The package holds no state and starts no goroutines.
package cloudevent

import (
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	stratus "github.com/stratus-run/stratus"
)

// SpecVersion is the only CloudEvents specversion accepted and produced.
const SpecVersion = "1.0"

// DefaultMaxBytes is the event size limit used when a caller passes a
// non-positive one: 256 KiB, as for Lambda's asynchronous invocations.
const DefaultMaxBytes = 256 << 10

// maxExtensionName is the longest extension attribute name accepted.
const maxExtensionName = 20

// Event is a CloudEvent 1.0 as Stratus stores and delivers it. Its JSON form
// (see [Event.JSON]) is the structured-mode JSON event format.
//
// Optional string attributes are absent when empty; Time is absent when zero.
// Data and DataBase64 mirror the two members of the JSON format and at most
// one of them is set: Data holds the "data" member as compact JSON (any JSON
// value when the data content type is JSON or absent, a JSON string
// otherwise; the literal null is an explicit null payload), DataBase64 the
// decoded bytes of "data_base64". [Event.DataBytes] gives the payload bytes
// either way.
type Event struct {
	SpecVersion     string
	ID              string
	Source          string
	Type            string
	DataContentType string
	DataSchema      string
	Subject         string
	Time            time.Time

	// Extensions maps extension attribute names to values of type string,
	// bool or int32 (the JSON types of the CloudEvents type system; URI,
	// timestamp and binary extensions travel as their canonical strings).
	Extensions map[string]any

	Data       json.RawMessage
	DataBase64 []byte
}

// coreAttributes are the attribute names defined by the core spec, plus
// "data", which no attribute may use.
var coreAttributes = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true,
	"datacontenttype": true, "dataschema": true, "subject": true, "time": true,
	"data": true,
}

// invalidf returns an error wrapping stratus.ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, stratus.ErrInvalid)...)
}

// Validate reports whether e is a valid CloudEvent 1.0 that this package can
// render. Its error wraps stratus.ErrInvalid and names the first bad
// attribute.
func (e Event) Validate() error {
	switch {
	case e.SpecVersion == "":
		return invalidf("attribute %q: missing", "specversion")
	case e.SpecVersion != SpecVersion:
		return invalidf("attribute %q: unsupported value %q (want %q)", "specversion", e.SpecVersion, SpecVersion)
	}
	if err := checkRequired("id", e.ID); err != nil {
		return err
	}
	if e.Source == "" {
		return invalidf("attribute %q: missing", "source")
	}
	if err := checkURIReference(e.Source); err != nil {
		return invalidf("attribute %q: %v", "source", err)
	}
	if err := checkRequired("type", e.Type); err != nil {
		return err
	}
	if e.DataContentType != "" {
		if _, err := parseMediaType(e.DataContentType); err != nil {
			return invalidf("attribute %q: %v", "datacontenttype", err)
		}
	}
	if e.DataSchema != "" {
		if err := checkURI(e.DataSchema); err != nil {
			return invalidf("attribute %q: %v", "dataschema", err)
		}
	}
	if e.Subject != "" {
		if err := checkString(e.Subject); err != nil {
			return invalidf("attribute %q: %v", "subject", err)
		}
	}
	if !e.Time.IsZero() {
		if y := e.Time.Year(); y < 0 || y > 9999 {
			return invalidf("attribute %q: year %d outside RFC 3339", "time", y)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.Extensions)) {
		if err := checkExtension(name, e.Extensions[name]); err != nil {
			return err
		}
	}
	return e.checkData()
}

func checkRequired(name, v string) error {
	if v == "" {
		return invalidf("attribute %q: missing", name)
	}
	if err := checkString(v); err != nil {
		return invalidf("attribute %q: %v", name, err)
	}
	return nil
}

func checkExtension(name string, v any) error {
	if err := checkExtensionName(name); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		if err := checkString(v); err != nil {
			return invalidf("extension attribute %q: %v", name, err)
		}
	case bool, int32:
	default:
		return invalidf("extension attribute %q: unsupported value type %T (want string, bool or int32)", name, v)
	}
	return nil
}

// checkExtensionName enforces the naming rule [a-z0-9]{1,20} and keeps
// extensions off the names the core spec defines.
func checkExtensionName(name string) error {
	if coreAttributes[name] {
		return invalidf("extension attribute %q: name is reserved by the core spec", name)
	}
	if name == "" || len(name) > maxExtensionName {
		return invalidf("attribute name %q: must be 1 to %d characters", name, maxExtensionName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return invalidf("attribute name %q: must be lower-case letters a-z and digits 0-9", name)
		}
	}
	return nil
}

func (e Event) checkData() error {
	if e.Data != nil && e.DataBase64 != nil {
		return invalidf("data and data_base64: both set")
	}
	if e.Data == nil {
		return nil
	}
	if !json.Valid(e.Data) {
		return invalidf("data: not valid JSON")
	}
	if !e.jsonData() && firstNonSpace(e.Data) != '"' {
		return invalidf("data: must be a JSON string for datacontenttype %q (use data_base64 for binary data)", e.DataContentType)
	}
	return nil
}

// jsonData reports whether e's data content type declares JSON: absent, or
// a media type whose subtype is json or ends in +json.
func (e Event) jsonData() bool {
	if e.DataContentType == "" {
		return true
	}
	mt, err := parseMediaType(e.DataContentType)
	return err == nil && isJSONMediaType(mt)
}

func isJSONMediaType(mt string) bool {
	_, sub, ok := strings.Cut(mt, "/")
	return ok && (sub == "json" || strings.HasSuffix(sub, "+json"))
}

// DataBytes returns e's payload as bytes: the decoded data_base64, the JSON
// text of data when the content type is JSON (or absent), or the contents of
// the data string otherwise. It returns nil when e has no data. This is the
// body of e in binary mode.
func (e Event) DataBytes() []byte {
	switch {
	case e.DataBase64 != nil:
		return e.DataBase64
	case e.Data == nil:
		return nil
	case e.jsonData():
		return e.Data
	}
	var s string
	if err := json.Unmarshal(e.Data, &s); err != nil {
		return e.Data // not a string: Validate refuses this event
	}
	return []byte(s)
}

// Size returns e's size as the limits count it: its data bytes plus the
// name and canonical string value of each attribute.
func (e Event) Size() int64 {
	n := len("specversion") + len(e.SpecVersion) + len("id") + len(e.ID) +
		len("source") + len(e.Source) + len("type") + len(e.Type)
	for _, a := range [...]struct {
		name, v string
	}{{"datacontenttype", e.DataContentType}, {"dataschema", e.DataSchema}, {"subject", e.Subject}} {
		if a.v != "" {
			n += len(a.name) + len(a.v)
		}
	}
	if !e.Time.IsZero() {
		n += len("time") + len(formatTime(e.Time))
	}
	for name, v := range e.Extensions {
		n += len(name) + len(canonicalString(v))
	}
	return int64(n) + int64(len(e.DataBytes()))
}

// checkSize refuses e when it is larger than maxBytes.
func checkSize(e Event, maxBytes int64) error {
	if n := e.Size(); n > maxBytes {
		return fmt.Errorf("size %d bytes exceeds the limit of %d: %w", n, maxBytes, stratus.ErrTooLarge)
	}
	return nil
}

// canonicalString renders an extension value as the core spec's canonical
// string encoding.
func canonicalString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	}
	return fmt.Sprint(v)
}

func formatTime(t time.Time) string { return t.Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 timestamp: %q", s)
	}
	return t, nil
}

// parseMediaType checks an RFC 2046 media type and returns it lower-cased
// without parameters.
func parseMediaType(s string) (string, error) {
	mt, _, err := mime.ParseMediaType(s)
	if err != nil {
		return "", fmt.Errorf("not a media type: %q", s)
	}
	if !strings.Contains(mt, "/") {
		return "", fmt.Errorf("not a media type (want type/subtype): %q", s)
	}
	return mt, nil
}

// checkString enforces the core spec's String type: valid UTF-8 with no
// control characters (U+0000–U+001F, U+007F–U+009F) and no noncharacters.
func checkString(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			return fmt.Errorf("control character %U at byte %d", r, i)
		case (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe:
			return fmt.Errorf("noncharacter %U at byte %d", r, i)
		}
	}
	return nil
}

// checkURIReference checks s against RFC 3986's URI-reference: only
// unreserved, reserved and percent-encoded characters, at most one '#', and
// a structure net/url accepts.
func checkURIReference(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Errorf("not a URI-reference: bad percent-encoding at byte %d", i)
			}
		case !uriChar(c):
			return fmt.Errorf("not a URI-reference: character %q at byte %d must be percent-encoded", c, i)
		}
	}
	if strings.Count(s, "#") > 1 {
		return fmt.Errorf("not a URI-reference: more than one '#'")
	}
	if _, err := url.Parse(s); err != nil {
		return fmt.Errorf("not a URI-reference: %q", s)
	}
	return nil
}

// checkURI checks that s is an absolute URI (RFC 3986 section 4.3).
func checkURI(s string) error {
	if err := checkURIReference(s); err != nil {
		return fmt.Errorf("not an absolute URI: %q", s)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("not an absolute URI: %q", s)
	}
	return nil
}

func uriChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}
