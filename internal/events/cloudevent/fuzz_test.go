package cloudevent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const fuzzMaxBytes = 1 << 16

var jsonSeeds = []string{
	minimal,
	with(`"subject":"s","time":"2018-04-05T17:31:00.5-07:00","dataschema":"https://x/y","e1":"v","e2":-3,"e3":false,"data":{"b":[1,"<&>"]}`),
	with(`"datacontenttype":"text/plain","data":"caf\u00e9"`),
	with(`"datacontenttype":"image/png","data_base64":"iVBORw0KGgo="`),
	with(`"data":null`),
	with(`"data_base64":""`),
	with(`"time":"2018-04-05T17:31:00+00:00"`),
	`{"specversion":"1.0","id":"1","type":"t"}`,
	with(`"id":"2"`),
	with(`"data":"x","data_base64":"eA=="`),
	with(`"ext":1.5`),
	with(`"MyExt":"x"`),
	with(`"datacontenttype":"text/plain","data":{"a":1}`),
	strings.Replace(minimal, `"/src"`, `"/a b"`, 1),
	`[]`, `{`, `null`, ``,
}

// checkRoundTrip asserts that an accepted event re-serialises, re-parses
// equal and renders to the same bytes, through JSON and through
// WriteRequest/FromRequest.
func checkRoundTrip(t *testing.T, e Event) {
	t.Helper()
	b, err := e.JSON()
	if err != nil {
		t.Fatalf("accepted event does not render: %v\n%#v", err, e)
	}
	e2, err := FromJSON(b, 1<<62)
	if err != nil {
		t.Fatalf("rendered event does not parse: %v\n%s", err, b)
	}
	if diff := cmp.Diff(e, e2, eventCmp); diff != "" {
		t.Fatalf("JSON round trip differs (-first +second):\n%s\n%s", diff, b)
	}
	if b2, _ := e2.JSON(); string(b2) != string(b) {
		t.Fatalf("JSON not stable:\n%s\n%s", b, b2)
	}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if err := WriteRequest(r, e); err != nil {
		t.Fatalf("WriteRequest: %v", err)
	}
	got, err := FromRequest(r, 1<<62, 1)
	if err != nil {
		t.Fatalf("FromRequest(WriteRequest): %v\n%s", err, b)
	}
	if diff := cmp.Diff([]Event{e}, got, eventCmp); diff != "" {
		t.Fatalf("HTTP round trip differs (-want +got):\n%s", diff)
	}
	// Binary mode keeps the payload bytes and the attributes' string forms.
	r = httptest.NewRequest(http.MethodPost, "/", nil)
	if err := WriteBinaryRequest(r, e); err != nil {
		t.Fatalf("WriteBinaryRequest: %v", err)
	}
	got, err = FromRequest(r, 1<<62, 1)
	if err != nil {
		t.Fatalf("FromRequest(WriteBinaryRequest): %v\n%s\n%v", err, b, r.Header)
	}
	if a, b := stringForm(e), stringForm(got[0]); !cmp.Equal(a, b) {
		t.Fatalf("binary round trip differs:\n%s", cmp.Diff(a, b))
	}
}

// stringForm is what binary mode preserves of an event.
func stringForm(e Event) map[string]string {
	m := map[string]string{"specversion": e.SpecVersion, "id": e.ID, "source": e.Source, "type": e.Type,
		"dataschema": e.DataSchema, "subject": e.Subject, "data": string(e.DataBytes())}
	if !e.Time.IsZero() {
		m["time"] = formatTime(e.Time)
	}
	if e.DataContentType != "" {
		m["datacontenttype"] = e.DataContentType
	} else if e.Data != nil {
		m["datacontenttype"] = "application/json"
	}
	for k, v := range e.Extensions {
		m["ext:"+k] = canonicalString(v)
	}
	return m
}

func FuzzFromJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := FromJSON(b, fuzzMaxBytes)
		if err != nil {
			if !isInvalidOrTooLarge(err) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if e.Size() > fuzzMaxBytes {
			t.Fatalf("accepted an event of %d bytes", e.Size())
		}
		checkRoundTrip(t, e)
	})
}

func FuzzFromRequest(f *testing.F) {
	hdr := "ce-specversion: 1.0\nce-id: 1\nce-source: /src\nce-type: com.example.t"
	for _, s := range jsonSeeds {
		f.Add(ContentTypeJSON, "", []byte(s))
		f.Add(ContentTypeBatchJSON, "", []byte("["+s+"]"))
	}
	f.Add(ContentTypeBatchJSON, "", []byte("["+minimal+","+minimal+"]"))
	for _, c := range []struct{ ct, hdr, body string }{
		{"", hdr, ""},
		{"application/json", hdr + "\nce-subject: Euro%20%E2%82%AC\nce-time: 2018-04-05T03:56:24Z", `{"a":1}`},
		{"text/plain; charset=utf-8", hdr + "\nce-ext: \"quoted \\\" value\"", "hello"},
		{"application/octet-stream", hdr, "\x00\xff"},
		{"", hdr + "\nce-traceparent: 00-abc\nCE-Other: %41", "[1]"},
		{"application/json", hdr, `{"a":`},
		{"", "ce-id: 1\nce-source: /s", ""},
		{"", hdr + "\nce-datacontenttype: text/plain", ""},
		{"", hdr + "\nce-subject: 50%", ""},
		{"", hdr + "\nce-subject: %C0%A0", ""},
		{"", hdr + "\nce-id: 2", ""},
		{"application/cloudevents+avro", "", "x"},
		{"not a type", hdr, ""},
	} {
		f.Add(c.ct, c.hdr, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, ct, headerLines string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/topics/t/events", strings.NewReader(string(body)))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		for line := range strings.SplitSeq(headerLines, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		events, err := FromRequest(r, fuzzMaxBytes, 4)
		if err != nil {
			if !isInvalidOrTooLarge(err) {
				t.Fatalf("error of no known kind: %v", err)
			}
			if events != nil {
				t.Fatalf("events returned with an error")
			}
			return
		}
		if len(events) > 4 {
			t.Fatalf("accepted a batch of %d events", len(events))
		}
		for _, e := range events {
			if e.Size() > fuzzMaxBytes {
				t.Fatalf("accepted an event of %d bytes", e.Size())
			}
			checkRoundTrip(t, e)
		}
	})
}
