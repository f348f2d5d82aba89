package cloudevent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	stratus "github.com/stratus-run/stratus"
)

// newRequest builds a publish request; headers alternate name, value.
func newRequest(ct, body string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/topics/t/events", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

// ceHeaders are the required binary-mode headers of minimalEvent.
var ceHeaders = []string{"ce-specversion", "1.0", "ce-id", "1", "ce-source", "/src", "ce-type", "com.example.t"}

func headers(extra ...string) []string { return append(append([]string{}, ceHeaders...), extra...) }

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name string
		req  *http.Request
		want func() []Event
	}{
		{"binary minimal", newRequest("", "", ceHeaders...), func() []Event { return []Event{minimalEvent()} }},
		{"binary json data", newRequest("application/json", `{"a": 1}`, headers("ce-subject", "s", "ce-time", "2018-04-05T03:56:24Z", "ce-traceparent", "00-abc")...),
			func() []Event {
				e := minimalEvent()
				e.DataContentType = "application/json"
				e.Data = json.RawMessage(`{"a":1}`)
				e.Subject = "s"
				e.Time = mustTime(t, "2018-04-05T03:56:24Z")
				e.Extensions = map[string]any{"traceparent": "00-abc"}
				return []Event{e}
			}},
		{"binary text data", newRequest("text/plain; charset=utf-8", `hello "you"`, ceHeaders...), func() []Event {
			e := minimalEvent()
			e.DataContentType = "text/plain; charset=utf-8"
			e.Data = json.RawMessage(`"hello \"you\""`)
			return []Event{e}
		}},
		{"binary octets", newRequest("application/octet-stream", "\x00\x01", ceHeaders...), func() []Event {
			e := minimalEvent()
			e.DataContentType = "application/octet-stream"
			e.DataBase64 = []byte{0, 1}
			return []Event{e}
		}},
		{"binary no content type, JSON body", func() *http.Request {
			r := newRequest("", `[true]`, ceHeaders...)
			r.Header.Del("Content-Type")
			return r
		}(), func() []Event {
			e := minimalEvent()
			e.Data = json.RawMessage(`[true]`)
			return []Event{e}
		}},
		{"binary no content type, other body", newRequest("", "\xff", ceHeaders...), func() []Event {
			e := minimalEvent()
			e.DataBase64 = []byte{0xff}
			return []Event{e}
		}},
		{"binary header names are case-insensitive", newRequest("", "", "CE-SPECVERSION", "1.0", "Ce-Id", "1", "ce-source", "/src", "cE-tYpE", "com.example.t", "Ce-MyExt", "v"),
			func() []Event {
				e := minimalEvent()
				e.Extensions = map[string]any{"myext": "v"}
				return []Event{e}
			}},
		{"binary percent-encoded and quoted values", newRequest("", "", headers("ce-subject", "Euro%20%E2%82%AC%20%f0%9f%98%80", "ce-ext", `"a \"b\"" c%41`)...),
			func() []Event {
				e := minimalEvent()
				e.Subject = "Euro € 😀"
				e.Extensions = map[string]any{"ext": `a "b" cA`}
				return []Event{e}
			}},
		{"structured", newRequest("application/cloudevents+json; charset=UTF-8", with(`"data":{"x":1}`), "ce-id", "ignored in structured mode"),
			func() []Event {
				e := minimalEvent()
				e.Data = json.RawMessage(`{"x":1}`)
				return []Event{e}
			}},
		{"structured content type is case-insensitive", newRequest("Application/CloudEvents+JSON", minimal), func() []Event { return []Event{minimalEvent()} }},
		{"batch", newRequest("application/cloudevents-batch+json", "["+minimal+","+strings.Replace(minimal, `"id":"1"`, `"id":"2"`, 1)+"]"),
			func() []Event {
				e2 := minimalEvent()
				e2.ID = "2"
				return []Event{minimalEvent(), e2}
			}},
		{"empty batch", newRequest("application/cloudevents-batch+json", " [ ] "), func() []Event { return []Event{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromRequest(tt.req, 0, 10)
			if err != nil {
				t.Fatalf("FromRequest: %v", err)
			}
			if diff := cmp.Diff(tt.want(), got, eventCmp); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromRequestErrors(t *testing.T) {
	bad := `{"specversion":"1.0","id":"2","type":"t"}` // no source
	tests := []struct {
		name string
		req  *http.Request
		kind error
		want string
	}{
		{"no headers at all", newRequest("application/json", `{"a":1}`), stratus.ErrInvalid, "no ce-* headers"},
		{"binary missing id", newRequest("", "", "ce-specversion", "1.0", "ce-source", "/s", "ce-type", "t"), stratus.ErrInvalid, `attribute "id": missing`},
		{"binary missing specversion", newRequest("", "", "ce-id", "1", "ce-source", "/s", "ce-type", "t"), stratus.ErrInvalid, `attribute "specversion": missing`},
		{"binary missing source", newRequest("", "", "ce-specversion", "1.0", "ce-id", "1", "ce-type", "t"), stratus.ErrInvalid, `attribute "source": missing`},
		{"binary missing type", newRequest("", "", "ce-specversion", "1.0", "ce-id", "1", "ce-source", "/s"), stratus.ErrInvalid, `attribute "type": missing`},
		{"binary wrong specversion", newRequest("", "", "ce-specversion", "0.3", "ce-id", "1", "ce-source", "/s", "ce-type", "t"), stratus.ErrInvalid, "unsupported value"},
		{"binary ce-datacontenttype", newRequest("", "", headers("ce-datacontenttype", "text/plain")...), stratus.ErrInvalid, "not allowed in binary mode"},
		{"binary repeated header", newRequest("", "", headers("ce-id", "2")...), stratus.ErrInvalid, "header ce-id: repeated"},
		{"binary bad time", newRequest("", "", headers("ce-time", "noon")...), stratus.ErrInvalid, `header ce-time: attribute "time"`},
		{"binary bad extension name", newRequest("", "", headers("ce-my_ext", "x")...), stratus.ErrInvalid, `attribute name "my_ext"`},
		{"binary long extension name", newRequest("", "", headers("ce-abcdefghij0123456789x", "x")...), stratus.ErrInvalid, "1 to 20 characters"},
		{"binary bare ce- header", newRequest("", "", headers("ce-", "x")...), stratus.ErrInvalid, `attribute name ""`},
		{"binary reserved name", newRequest("", "", headers("ce-data", "x")...), stratus.ErrInvalid, "reserved"},
		{"binary malformed percent", newRequest("", "", headers("ce-subject", "50%")...), stratus.ErrInvalid, "malformed percent-encoding"},
		{"binary percent-encoded invalid UTF-8", newRequest("", "", headers("ce-subject", "%C0%A0")...), stratus.ErrInvalid, "not valid UTF-8"},
		{"binary percent-encoded control character", newRequest("", "", headers("ce-subject", "a%0Ab")...), stratus.ErrInvalid, "control character"},
		{"binary unterminated quote", newRequest("", "", headers("ce-subject", `"abc`)...), stratus.ErrInvalid, "unterminated quoted string"},
		{"binary empty subject", newRequest("", "", headers("ce-subject", "")...), stratus.ErrInvalid, "must not be empty"},
		{"binary invalid JSON body", newRequest("application/json", `{"a":`, ceHeaders...), stratus.ErrInvalid, "body is not valid JSON"},
		{"bad content type", newRequest("not/a type", "", ceHeaders...), stratus.ErrInvalid, "not a media type"},
		{"unsupported event format", newRequest("application/cloudevents+avro", "x"), stratus.ErrInvalid, "unsupported event format"},
		{"structured wrong charset", newRequest("application/cloudevents+json; charset=latin1", minimal), stratus.ErrInvalid, "must be UTF-8"},
		{"structured malformed", newRequest(ContentTypeJSON, `{"id":`), stratus.ErrInvalid, "malformed JSON"},
		{"structured missing type", newRequest(ContentTypeJSON, `{"specversion":"1.0","id":"1","source":"/s"}`), stratus.ErrInvalid, `event: attribute "type": missing`},
		{"structured empty body", newRequest(ContentTypeJSON, ""), stratus.ErrInvalid, "malformed JSON"},
		{"batch not an array", newRequest(ContentTypeBatchJSON, minimal), stratus.ErrInvalid, "want a JSON array"},
		{"batch mixed valid and invalid", newRequest(ContentTypeBatchJSON, "["+minimal+","+minimal+","+bad+"]"), stratus.ErrInvalid, `batch event 2: attribute "source": missing`},
		{"batch element not an object", newRequest(ContentTypeBatchJSON, "["+minimal+",7]"), stratus.ErrInvalid, "batch event 1: malformed event"},
		{"batch trailing data", newRequest(ContentTypeBatchJSON, "["+minimal+"]]"), stratus.ErrInvalid, "batch: malformed JSON"},
		{"batch too many events", newRequest(ContentTypeBatchJSON, "["+strings.Repeat(minimal+",", 3)+minimal+"]"), stratus.ErrTooLarge, "more than 3 events"},
		{"binary body too large", newRequest("text/plain", strings.Repeat("x", 501), ceHeaders...), stratus.ErrTooLarge, "exceeds the limit of 500"},
		{"binary event too large", newRequest("text/plain", strings.Repeat("x", 480), ceHeaders...), stratus.ErrTooLarge, "exceeds the limit of 500"},
		{"structured body too large", newRequest(ContentTypeJSON, with(`"data":"`+strings.Repeat("x", 1001)+`"`)), stratus.ErrTooLarge, "exceeds the limit of 1000"},
		{"structured event too large", newRequest(ContentTypeJSON, with(`"data":"`+strings.Repeat("x", 500)+`"`)), stratus.ErrTooLarge, "exceeds the limit of 500"},
		{"batch event too large", newRequest(ContentTypeBatchJSON, "["+minimal+","+with(`"data":"`+strings.Repeat("x", 500)+`"`)+"]"), stratus.ErrTooLarge, "batch event 1: size"},
		{"batch body too large", newRequest(ContentTypeBatchJSON, "["+strings.Repeat(" ", 3000)+"]"), stratus.ErrTooLarge, "exceeds the limit of 3000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := FromRequest(tt.req, 500, 3)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("FromRequest = %v, %v; want an error wrapping %v", events, err, tt.kind)
			}
			if events != nil {
				t.Errorf("FromRequest returned events with an error: %v", events)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromRequest error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFromRequestContentLengthRefusedUnread(t *testing.T) {
	body := &countingReader{r: strings.NewReader(strings.Repeat("x", 100))}
	r := httptest.NewRequest(http.MethodPost, "/", body)
	r.ContentLength = 1 << 30
	r.Header.Set("Content-Type", ContentTypeJSON)
	if _, err := FromRequest(r, 10, 1); !errors.Is(err, stratus.ErrTooLarge) {
		t.Fatalf("FromRequest = %v, want ErrTooLarge", err)
	}
	if body.n != 0 {
		t.Errorf("read %d bytes of a body whose Content-Length was already too large", body.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestFromRequestMaxBytesReader(t *testing.T) {
	r := newRequest(ContentTypeJSON, with(`"data":"`+strings.Repeat("x", 100)+`"`))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 50)
	if _, err := FromRequest(r, 1000, 1); !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("FromRequest behind MaxBytesReader = %v, want ErrTooLarge", err)
	}
}

func TestFromRequestReadError(t *testing.T) {
	r := newRequest(ContentTypeJSON, "")
	r.Body = io.NopCloser(errReader{})
	_, err := FromRequest(r, 0, 1)
	if err == nil || isInvalidOrTooLarge(err) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("FromRequest with a failing body = %v, want the read error unclassified", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestWriteRequestRoundTrip(t *testing.T) {
	for _, in := range []string{
		minimal,
		with(`"subject":"Euro € 😀","time":"2018-04-05T17:31:00.5+01:00","dataschema":"https://x/s","n":7,"b":true,"s":"x y","data":{"k":[1,2]}`),
		with(`"datacontenttype":"text/xml","data":"<a/>"`),
		with(`"datacontenttype":"application/octet-stream","data_base64":"AAEC"`),
	} {
		e, err := FromJSON([]byte(in), 0)
		if err != nil {
			t.Fatalf("FromJSON(%s): %v", in, err)
		}
		r := httptest.NewRequest(http.MethodPost, "http://subscriber.test/hook", nil)
		if err := WriteRequest(r, e); err != nil {
			t.Fatalf("WriteRequest: %v", err)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, ContentTypeJSON) {
			t.Errorf("Content-Type = %q", ct)
		}
		if r.GetBody == nil || r.ContentLength <= 0 {
			t.Errorf("WriteRequest left GetBody nil or ContentLength %d", r.ContentLength)
		}
		got, err := FromRequest(r, 0, 1)
		if err != nil {
			t.Fatalf("FromRequest(WriteRequest(%s)): %v", in, err)
		}
		if diff := cmp.Diff([]Event{e}, got, eventCmp); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", in, diff)
		}
	}
}

func TestWriteBatchRequestRoundTrip(t *testing.T) {
	e1, e2 := minimalEvent(), minimalEvent()
	e2.ID, e2.Data = "2", json.RawMessage(`"x"`)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if err := WriteBatchRequest(r, []Event{e1, e2}); err != nil {
		t.Fatal(err)
	}
	got, err := FromRequest(r, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Event{e1, e2}, got, eventCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := WriteBatchRequest(r, []Event{e1, {}}); !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "batch event 1") {
		t.Errorf("WriteBatchRequest with an invalid event = %v", err)
	}
}

func TestWriteBinaryRequest(t *testing.T) {
	e := minimalEvent()
	e.Subject = `Euro € "q" 100%`
	e.Time = mustTime(t, "2018-04-05T17:31:00Z")
	e.Extensions = map[string]any{"n": int32(-7), "b": false}
	e.Data = json.RawMessage(`{"a":1}`)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Ce-Stale", "old")
	if err := WriteBinaryRequest(r, e); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"Ce-Subject":   "Euro%20%E2%82%AC%20%22q%22%20100%25",
		"Ce-Time":      "2018-04-05T17:31:00Z",
		"Ce-N":         "-7",
		"Ce-B":         "false",
		"Content-Type": "application/json",
		"Ce-Stale":     "",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	got, err := FromRequest(r, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := e
	want.DataContentType = "application/json"                 // made explicit, as the JSON format asks
	want.Extensions = map[string]any{"n": "-7", "b": "false"} // headers carry canonical strings
	if diff := cmp.Diff([]Event{want}, got, eventCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestHeaderValueCoding(t *testing.T) {
	for _, s := range []string{"simple", "Euro € 😀", "space encoded", "percent%encoded", `quote"encoded`, "café", "tab\tnl\n", "\u007f\u0080"} {
		enc := encodeHeaderValue(s)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c <= ' ' || c >= 0x7f || c == '"' {
				t.Errorf("encodeHeaderValue(%q) = %q: byte %q not encoded", s, enc, c)
			}
		}
		dec, err := decodeHeaderValue(enc)
		if err != nil || dec != s {
			t.Errorf("decodeHeaderValue(%q) = %q, %v; want %q", enc, dec, err, s)
		}
	}
	if got := encodeHeaderValue("Euro € 😀"); got != "Euro%20%E2%82%AC%20%F0%9F%98%80" {
		t.Errorf("encodeHeaderValue = %q, want the spec's example", got)
	}
	for in, want := range map[string]string{
		"%41%62":    "Ab", // unnecessarily encoded: accepted
		`"a b"`:     "a b",
		`x"\"\\"y`:  `x"\y`,
		`"%25"`:     "%",
		"%e2%82%ac": "€",
	} {
		got, err := decodeHeaderValue(in)
		if err != nil || got != want {
			t.Errorf("decodeHeaderValue(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"%", "%4", "%zz", "%C0%A0", "%FF", `"open`, `"\`, `"with \% quote"`} {
		if got, err := decodeHeaderValue(in); err == nil {
			t.Errorf("decodeHeaderValue(%q) = %q, want an error", in, got)
		}
	}
}
