package httpevent

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
)

// response is a validated response object; its fields are sub-slices of the
// function's result.
type response struct {
	status            int
	headers           []byte // JSON object, nil when absent or null
	multiValueHeaders []byte // JSON object, nil when absent or null
	cookies           []byte // JSON array, nil when absent or null
	body              []byte // decoded
}

// WriteResponse maps a function's result to w as function URLs do.
//
// A result that is a JSON object with a "statusCode" member (matched
// case-sensitively) is a response object: statusCode, headers,
// multiValueHeaders (which win over headers of the same name), cookies (one
// Set-Cookie header each), body and isBase64Encoded. A response object with
// a body and no content-type gets application/json. Any other result (any
// other JSON value, null, an object without statusCode, or bytes that are not
// JSON at all) is sent verbatim as a 200 application/json body.
//
// WriteResponse sets Content-Length, drops hop-by-hop headers the function
// sets and sends no body with 204 and 304. The answer to a HEAD request
// (head) keeps the Content-Length the function set, when it sent no body
// and the value is a length: that of the GET it stands for (RFC 9110,
// section 8.6). It returns an error wrapping
// stratus.ErrInvalid only when a response object is malformed (see the
// package comment); then it has not touched w and the caller answers 502.
// Errors writing to w are not reported: the client has gone.
func WriteResponse(w http.ResponseWriter, result []byte, head bool) error {
	if i := skipSpace(result, 0); i < len(result) && result[i] == '{' && json.Valid(result) {
		resp, ok, err := parseResponse(result[i:])
		if err != nil {
			return err
		}
		if ok {
			resp.write(w, head)
			return nil
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(result)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(result)
	return nil
}

// parseResponse validates the valid JSON object obj as a response object.
// It reports false when obj has no statusCode member.
func parseResponse(obj []byte) (response, bool, error) {
	var (
		resp                  response
		statusCode, body, b64 []byte
	)
	it := newObjectIter(obj)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		switch string(unquoteBytes(k)) {
		case "statusCode":
			statusCode = v
		case "headers":
			resp.headers = v
		case "multiValueHeaders":
			resp.multiValueHeaders = v
		case "cookies":
			resp.cookies = v
		case "body":
			body = v
		case "isBase64Encoded":
			b64 = v
		}
	}
	if statusCode == nil {
		return response{}, false, nil
	}

	status, ok := parseStatus(statusCode)
	if !ok {
		return response{}, true, invalid("statusCode %s is not an integer in 200-599", clip(statusCode))
	}
	resp.status = status

	var err error
	if resp.headers, err = checkHeaders(resp.headers, false); err != nil {
		return response{}, true, err
	}
	if resp.multiValueHeaders, err = checkHeaders(resp.multiValueHeaders, true); err != nil {
		return response{}, true, err
	}
	if resp.cookies, err = checkCookies(resp.cookies); err != nil {
		return response{}, true, err
	}

	isBase64 := false
	switch string(b64) {
	case "", "null", "false":
	case "true":
		isBase64 = true
	default:
		return response{}, true, invalid("isBase64Encoded %s is not a boolean", clip(b64))
	}
	switch {
	case body == nil || string(body) == "null":
	case body[0] != '"':
		return response{}, true, invalid("body is not a string")
	case isBase64:
		src := unquoteBytes(body)
		dst := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		n, err := base64.StdEncoding.Decode(dst, src)
		if err != nil {
			return response{}, true, fmt.Errorf("function response: decode base64 body: %w: %w", err, stratus.ErrInvalid)
		}
		resp.body = dst[:n]
	default:
		resp.body = unquoteBytes(body)
	}
	return resp, true, nil
}

// parseStatus parses a JSON number that is an integer in 200-599 written
// without fraction or exponent.
func parseStatus(v []byte) (int, bool) {
	if len(v) != 3 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 200 && n <= 599
}

// checkHeaders validates a headers (multi false) or multiValueHeaders
// (multi true) member and returns it, or nil when it is null.
func checkHeaders(v []byte, multi bool) ([]byte, error) {
	field := "headers"
	if multi {
		field = "multiValueHeaders"
	}
	switch {
	case v == nil || string(v) == "null":
		return nil, nil
	case v[0] != '{':
		return nil, invalid("%s is not an object", field)
	}
	it := newObjectIter(v)
	for {
		k, val, ok := it.next()
		if !ok {
			return v, nil
		}
		name := unquoteBytes(k)
		if !validName(name) {
			return nil, invalid("%s: header name %q is invalid", field, clip(name))
		}
		if !multi {
			if _, _, err := headerValue(name, val); err != nil {
				return nil, err
			}
			continue
		}
		switch val[0] {
		case 'n': // null
			continue
		case '[':
		default:
			return nil, invalid("multiValueHeaders: header %q is not an array", clip(name))
		}
		ai := newArrayIter(val)
		for {
			e, ok := ai.next()
			if !ok {
				break
			}
			if _, _, err := headerValue(name, e); err != nil {
				return nil, err
			}
		}
	}
}

// headerValue returns the header value the JSON value v stands for: a
// string's content, the text of a number or boolean. It reports false for
// null.
func headerValue(name, v []byte) ([]byte, bool, error) {
	switch v[0] {
	case 'n':
		return nil, false, nil
	case '{', '[':
		return nil, false, invalid("header %q: value is not a string, number or boolean", clip(name))
	case '"':
		v = unquoteBytes(v)
	}
	if !validValue(v) {
		return nil, false, invalid("header %q: value %q has control characters", clip(name), clip(v))
	}
	return v, true, nil
}

func checkCookies(v []byte) ([]byte, error) {
	switch {
	case v == nil || string(v) == "null":
		return nil, nil
	case v[0] != '[':
		return nil, invalid("cookies is not an array")
	}
	it := newArrayIter(v)
	for {
		e, ok := it.next()
		if !ok {
			return v, nil
		}
		switch e[0] {
		case 'n':
		case '"':
			if c := unquoteBytes(e); !validValue(c) {
				return nil, invalid("cookie %q has control characters", clip(c))
			}
		default:
			return nil, invalid("cookie %s is not a string", clip(e))
		}
	}
}

// write writes the validated response to w, the answer to a HEAD request
// when head.
func (r *response) write(w http.ResponseWriter, head bool) {
	h := w.Header()
	if r.headers != nil {
		it := newObjectIter(r.headers)
		for {
			k, val, ok := it.next()
			if !ok {
				break
			}
			if v, ok, _ := headerValue(nil, val); ok {
				if name := canonicalName(k); !dropped(name) {
					h[name] = []string{string(v)}
				}
			}
		}
	}
	if r.multiValueHeaders != nil {
		// Names in multiValueHeaders replace those set before, then collect
		// all their values: two passes keep this linear in the input.
		it := newObjectIter(r.multiValueHeaders)
		for {
			k, val, ok := it.next()
			if !ok {
				break
			}
			if val[0] == '[' { // not null
				delete(h, canonicalName(k))
			}
		}
		it = newObjectIter(r.multiValueHeaders)
		for {
			k, val, ok := it.next()
			if !ok {
				break
			}
			if val[0] != '[' {
				continue
			}
			name := canonicalName(k)
			if dropped(name) {
				continue
			}
			ai := newArrayIter(val)
			for {
				e, ok := ai.next()
				if !ok {
					break
				}
				if v, ok, _ := headerValue(nil, e); ok {
					h[name] = append(h[name], string(v))
				}
			}
		}
	}
	if r.cookies != nil {
		it := newArrayIter(r.cookies)
		for {
			e, ok := it.next()
			if !ok {
				break
			}
			if e[0] == '"' {
				h.Add("Set-Cookie", unquote(e))
			}
		}
	}
	body := r.body
	if r.status == http.StatusNoContent || r.status == http.StatusNotModified {
		body = nil
	} else {
		if len(body) > 0 && len(h["Content-Type"]) == 0 {
			h.Set("Content-Type", "application/json")
		}
		n := strconv.Itoa(len(body))
		if head && len(body) == 0 {
			if v, ok := r.contentLength(); ok {
				n = v
			}
		}
		h.Set("Content-Length", n)
	}
	w.WriteHeader(r.status)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// contentLength returns the Content-Length the function set (the last
// value in multiValueHeaders, else in headers), when it is a length.
func (r *response) contentLength() (string, bool) {
	var found []byte
	for _, obj := range [][]byte{r.headers, r.multiValueHeaders} {
		if obj == nil {
			continue
		}
		it := newObjectIter(obj)
		for {
			k, val, ok := it.next()
			if !ok {
				break
			}
			if canonicalName(k) != "Content-Length" {
				continue
			}
			if val[0] == '[' {
				ai := newArrayIter(val)
				for {
					e, ok := ai.next()
					if !ok {
						break
					}
					if v, ok, _ := headerValue(nil, e); ok {
						found = v
					}
				}
			} else if v, ok, _ := headerValue(nil, val); ok {
				found = v
			}
		}
	}
	n, err := strconv.ParseUint(string(found), 10, 63)
	if err != nil {
		return "", false
	}
	return strconv.FormatUint(n, 10), true
}

// dropped reports whether a response header (canonical name) is not passed
// on: hop-by-hop headers, and Content-Length, which WriteResponse sets.
func dropped(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Content-Length":
		return true
	}
	return false
}

// canonicalName returns the canonical header name for a quoted JSON key.
func canonicalName(key []byte) string {
	return http.CanonicalHeaderKey(string(unquoteBytes(key)))
}

// validName reports whether name is an HTTP token (RFC 9110, section 5.6.2).
func validName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c >= 0x80 || !isTchar[c] {
			return false
		}
	}
	return true
}

var isTchar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validValue reports whether v has no control characters other than tab.
func validValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("function response: "+format+": %w", append(args, stratus.ErrInvalid)...)
}

// clip returns b for an error message, cut to a few dozen bytes.
func clip(b []byte) string {
	const limit = 40
	if len(b) > limit {
		return strings.ToValidUTF8(string(b[:limit]), "") + "..."
	}
	return string(b)
}
