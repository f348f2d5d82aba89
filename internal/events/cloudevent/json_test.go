package cloudevent

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	stratus "github.com/stratus-run/stratus"
)

// eventCmp compares events; times are equal when they name the same instant
// with the same offset (their *time.Location pointers may differ).
var eventCmp = cmp.Comparer(func(a, b time.Time) bool {
	_, oa := a.Zone()
	_, ob := b.Zone()
	return a.Equal(b) && oa == ob
})

const minimal = `{"specversion":"1.0","id":"1","source":"/src","type":"com.example.t"}`

// with returns the minimal event's JSON with extra members appended.
func with(members string) string {
	return strings.TrimSuffix(minimal, "}") + "," + members + "}"
}

func minimalEvent() Event {
	return Event{SpecVersion: "1.0", ID: "1", Source: "/src", Type: "com.example.t"}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestFromJSON(t *testing.T) {
	full := minimalEvent()
	full.DataContentType = "application/json"
	full.DataSchema = "https://example.com/schema.json"
	full.Subject = "larger-context"
	full.Time = mustTime(t, "2018-04-05T17:31:00Z")
	full.Extensions = map[string]any{"comexampleextension1": "value", "comexampleothervalue": int32(5), "flag": true}
	full.Data = json.RawMessage(`{"appinfoA":"abc","appinfoB":123,"appinfoC":true}`)

	tests := []struct {
		name string
		in   string
		want func(*Event)
	}{
		{"minimal", minimal, func(*Event) {}},
		{"full", `{
			"specversion" : "1.0",
			"type" : "com.example.t",
			"source" : "/src",
			"subject": "larger-context",
			"id" : "1",
			"time" : "2018-04-05T17:31:00Z",
			"dataschema": "https://example.com/schema.json",
			"comexampleextension1" : "value",
			"comexampleothervalue" : 5,
			"flag": true,
			"datacontenttype" : "application/json",
			"data" : { "appinfoA" : "abc", "appinfoB" : 123, "appinfoC" : true }
		}`, func(e *Event) { *e = full }},
		{"nulls are unset", with(`"subject":null,"time":null,"unsetext":null,"data_base64":null`), func(*Event) {}},
		{"data null is an explicit null payload", with(`"data":null`), func(e *Event) { e.Data = json.RawMessage(`null`) }},
		{"json string data without content type", with(`"data":"I'm just a string"`), func(e *Event) { e.Data = json.RawMessage(`"I'm just a string"`) }},
		{"xml data as a string", with(`"datacontenttype":"application/xml","data":"<much wow=\"xml\"/>"`), func(e *Event) {
			e.DataContentType = "application/xml"
			e.Data = json.RawMessage(`"<much wow=\"xml\"/>"`)
		}},
		{"+json content type takes any JSON", with(`"datacontenttype":"application/vnd.x+json; charset=utf-8","data":[1, 2]`), func(e *Event) {
			e.DataContentType = "application/vnd.x+json; charset=utf-8"
			e.Data = json.RawMessage(`[1,2]`)
		}},
		{"data_base64", with(`"datacontenttype":"application/octet-stream","data_base64":"AAECAw=="`), func(e *Event) {
			e.DataContentType = "application/octet-stream"
			e.DataBase64 = []byte{0, 1, 2, 3}
		}},
		{"empty data_base64", with(`"data_base64":""`), func(e *Event) { e.DataBase64 = []byte{} }},
		{"time with offset and fraction", with(`"time":"2018-04-05T17:31:00.123456789+02:00"`), func(e *Event) {
			e.Time = mustTime(t, "2018-04-05T17:31:00.123456789+02:00")
		}},
		{"source absolute URI", strings.Replace(minimal, `"/src"`, `"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"`, 1), func(e *Event) {
			e.Source = "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"
		}},
		{"source percent-encoded", strings.Replace(minimal, `"/src"`, `"/a%20b?q=1#frag"`, 1), func(e *Event) { e.Source = "/a%20b?q=1#frag" }},
		{"extension int32 bounds", with(`"lo":-2147483648,"hi":2147483647`), func(e *Event) {
			e.Extensions = map[string]any{"lo": int32(-2147483648), "hi": int32(2147483647)}
		}},
		{"extension name of 20 characters", with(`"abcdefghij0123456789":"x"`), func(e *Event) {
			e.Extensions = map[string]any{"abcdefghij0123456789": "x"}
		}},
		{"escaped member names", `{"specversion":"1.0","\u0069d":"1","source":"/src","type":"com.example.t"}`, func(*Event) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromJSON([]byte(tt.in), 0)
			if err != nil {
				t.Fatalf("FromJSON: %v", err)
			}
			want := minimalEvent()
			tt.want(&want)
			if diff := cmp.Diff(want, got, eventCmp); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"not JSON", `{`, "malformed JSON"},
		{"not an object", `[]`, "want a JSON object"},
		{"trailing data", minimal + `{}`, "data after the event object"},
		{"missing specversion", `{"id":"1","source":"/src","type":"t"}`, `"specversion": missing`},
		{"wrong specversion", strings.Replace(minimal, `"1.0"`, `"0.3"`, 1), `unsupported value "0.3"`},
		{"numeric specversion", strings.Replace(minimal, `"1.0"`, `1.0`, 1), `"specversion": must be a string`},
		{"missing id", `{"specversion":"1.0","source":"/src","type":"t"}`, `"id": missing`},
		{"empty id", strings.Replace(minimal, `"id":"1"`, `"id":""`, 1), `"id": missing`},
		{"null id", strings.Replace(minimal, `"id":"1"`, `"id":null`, 1), `"id": missing`},
		{"numeric id", strings.Replace(minimal, `"id":"1"`, `"id":1`, 1), `"id": must be a string`},
		{"missing source", `{"specversion":"1.0","id":"1","type":"t"}`, `"source": missing`},
		{"source with space", strings.Replace(minimal, `"/src"`, `"/a b"`, 1), `"source": not a URI-reference`},
		{"source bad escape", strings.Replace(minimal, `"/src"`, `"/a%zz"`, 1), `"source": not a URI-reference`},
		{"source two fragments", strings.Replace(minimal, `"/src"`, `"/a#b#c"`, 1), `"source": not a URI-reference`},
		{"source colon in first segment", strings.Replace(minimal, `"/src"`, `":x"`, 1), `"source": not a URI-reference`},
		{"missing type", `{"specversion":"1.0","id":"1","source":"/src"}`, `"type": missing`},
		{"type with control character", strings.Replace(minimal, `"com.example.t"`, `"a\u0007b"`, 1), `"type": control character`},
		{"id with noncharacter", strings.Replace(minimal, `"id":"1"`, `"id":"\ufffe"`, 1), `"id": noncharacter`},
		{"bad time", with(`"time":"yesterday"`), `"time": not an RFC 3339 timestamp`},
		{"time without zone", with(`"time":"2018-04-05T17:31:00"`), `"time": not an RFC 3339 timestamp`},
		{"empty subject", with(`"subject":""`), `"subject": must not be empty`},
		{"bad datacontenttype", with(`"datacontenttype":"not a type"`), `"datacontenttype": not a media type`},
		{"relative dataschema", with(`"dataschema":"/schema"`), `"dataschema": not an absolute URI`},
		{"uppercase extension", with(`"MyExt":"x"`), `attribute name "MyExt"`},
		{"extension name too long", with(`"abcdefghij0123456789x":"x"`), "must be 1 to 20 characters"},
		{"extension with underscore", with(`"my_ext":"x"`), `attribute name "my_ext"`},
		{"empty member name", with(`"":"x"`), `attribute name ""`},
		{"extension object", with(`"ext":{"a":1}`), `extension attribute "ext": must be a string, boolean or integer`},
		{"extension float", with(`"ext":1.5`), "not a 32-bit integer"},
		{"extension out of range", with(`"ext":2147483648`), "not a 32-bit integer"},
		{"repeated member", with(`"id":"2"`), `member "id": repeated`},
		{"data and data_base64", with(`"data":"x","data_base64":"eA=="`), "both present"},
		{"bad base64", with(`"data_base64":"!!"`), "data_base64: not valid base64"},
		{"non-string base64", with(`"data_base64":5`), "data_base64: must be a string"},
		{"object data with text content type", with(`"datacontenttype":"text/plain","data":{"a":1}`), "data: must be a JSON string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromJSON([]byte(tt.in), 0)
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("FromJSON error = %v, want one wrapping ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromJSON error = %q, want it to contain %q", err, tt.want)
			}
			if msg := err.Error(); strings.ToLower(msg[:1]) != msg[:1] {
				t.Errorf("error %q does not start in lower case", msg)
			}
		})
	}
}

func TestFromJSONTooLarge(t *testing.T) {
	data := `"` + strings.Repeat("x", 1000) + `"`
	in := []byte(with(`"data":` + data))
	if _, err := FromJSON(in, 2000); err != nil {
		t.Fatalf("FromJSON under the limit: %v", err)
	}
	if _, err := FromJSON(in, 1000); !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("FromJSON over the event limit: error %v, want ErrTooLarge", err)
	}
	if _, err := FromJSON(in, 100); !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("FromJSON over the read limit: error %v, want ErrTooLarge", err)
	}
}

func TestSize(t *testing.T) {
	e := minimalEvent()
	base := int64(len("specversion1.0id1source/srctypecom.example.t"))
	if got := e.Size(); got != base {
		t.Errorf("Size = %d, want %d", got, base)
	}
	e.Extensions = map[string]any{"n": int32(42), "b": true}
	e.DataBase64 = []byte("abcd")
	if got, want := e.Size(), base+int64(len("n42btrue")+4); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, in := range []string{
		minimal,
		with(`"subject":"s","time":"2018-04-05T17:31:00.5-07:00","dataschema":"https://x/y","e1":"v","e2":-3,"e3":false,"data":{"b": [1, "<&>"]}`),
		with(`"datacontenttype":"text/plain","data":"caf\u00e9 <b>"`),
		with(`"datacontenttype":"image/png","data_base64":"iVBORw0KGgo="`),
		with(`"data":null`),
	} {
		e, err := FromJSON([]byte(in), 0)
		if err != nil {
			t.Fatalf("FromJSON(%s): %v", in, err)
		}
		b, err := e.JSON()
		if err != nil {
			t.Fatalf("JSON: %v", err)
		}
		e2, err := FromJSON(b, 0)
		if err != nil {
			t.Fatalf("FromJSON(JSON()=%s): %v", b, err)
		}
		if diff := cmp.Diff(e, e2, eventCmp); diff != "" {
			t.Errorf("round trip of %s (-first +second):\n%s", in, diff)
		}
		b2, _ := e2.JSON()
		if string(b) != string(b2) {
			t.Errorf("JSON not stable:\n%s\n%s", b, b2)
		}
	}
}

func TestJSONOrderAndEscaping(t *testing.T) {
	e := minimalEvent()
	e.Subject = "<a&b>"
	e.Time = mustTime(t, "2020-01-02T03:04:05Z")
	e.Extensions = map[string]any{"zz": "z", "aa": int32(1)}
	e.DataContentType = "application/json"
	e.Data = json.RawMessage("{ \"k\" : \"<v>\" }")
	got, err := e.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"specversion":"1.0","id":"1","source":"/src","type":"com.example.t","datacontenttype":"application/json",` +
		`"subject":"<a&b>","time":"2020-01-02T03:04:05Z","aa":1,"zz":"z","data":{"k":"<v>"}}`
	if string(got) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Event)
		want string
	}{
		{"empty specversion", func(e *Event) { e.SpecVersion = "" }, `"specversion": missing`},
		{"extension value type", func(e *Event) { e.Extensions = map[string]any{"n": 5} }, "unsupported value type int"},
		{"extension uses core name", func(e *Event) { e.Extensions = map[string]any{"subject": "x"} }, "reserved"},
		{"extension named data", func(e *Event) { e.Extensions = map[string]any{"data": "x"} }, "reserved"},
		{"both data forms", func(e *Event) { e.Data = json.RawMessage(`1`); e.DataBase64 = []byte{1} }, "both set"},
		{"data not JSON", func(e *Event) { e.Data = json.RawMessage(`{`) }, "data: not valid JSON"},
		{"year beyond RFC 3339", func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := minimalEvent()
			tt.mod(&e)
			err := e.Validate()
			if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want ErrInvalid containing %q", err, tt.want)
			}
			if _, err := e.JSON(); !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("JSON error = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDataBytes(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Event)
		want string
	}{
		{"none", func(*Event) {}, ""},
		{"json", func(e *Event) { e.Data = json.RawMessage(`{"a":1}`) }, `{"a":1}`},
		{"json string", func(e *Event) { e.Data = json.RawMessage(`"s"`) }, `"s"`},
		{"text", func(e *Event) { e.DataContentType = "text/plain"; e.Data = json.RawMessage(`"caf\u00e9"`) }, "café"},
		{"binary", func(e *Event) { e.DataBase64 = []byte("raw") }, "raw"},
	}
	for _, tt := range tests {
		e := minimalEvent()
		tt.mod(&e)
		if got := string(e.DataBytes()); got != tt.want {
			t.Errorf("%s: DataBytes = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestMarshalUnmarshal(t *testing.T) {
	e := minimalEvent()
	e.Data = json.RawMessage(`[1]`)
	b, err := json.Marshal([]Event{e, e})
	if err != nil {
		t.Fatal(err)
	}
	var got []Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Event{e, e}, got, eventCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var bad Event
	if err := json.Unmarshal([]byte(`{"specversion":"1.0"}`), &bad); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("Unmarshal of an invalid event: %v, want ErrInvalid", err)
	}
}
