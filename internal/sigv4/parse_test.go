package sigv4

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAuthorization(t *testing.T) {
	sig := strings.Repeat("0123456789abcdef", 4)
	good := "AWS4-HMAC-SHA256 Credential=AKID/20260102/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=" + sig
	a, err := parseAuthorization(good)
	if err != nil {
		t.Fatal(err)
	}
	want := authorization{keyID: "AKID", date: "20260102", region: "us-east-1", service: "lambda", terminator: "aws4_request",
		signed: "content-type;host;x-amz-date", signature: sig}
	if diff := cmp.Diff(want, a, cmp.AllowUnexported(authorization{})); diff != "" {
		t.Errorf("parse (-want +got):\n%s", diff)
	}
	// Without spaces after the commas, as some clients write it.
	if _, err := parseAuthorization(strings.ReplaceAll(good, ", ", ",")); err != nil {
		t.Errorf("without spaces: %v", err)
	}

	for _, tc := range []struct{ name, header, message string }{
		{"other scheme", "Bearer abc", "algorithm"},
		{"other algorithm", "AWS4-HMAC-SHA512 Credential=a/20260102/r/s/aws4_request, SignedHeaders=host, Signature=" + sig, "algorithm"},
		{"glued", "AWS4-HMAC-SHA256Credential=a", "algorithm"},
		{"nothing", "AWS4-HMAC-SHA256", "requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter."},
		{"no signature", "AWS4-HMAC-SHA256 Credential=a/20260102/r/s/aws4_request, SignedHeaders=host", "requires 'Signature'"},
		{"not key=value", "AWS4-HMAC-SHA256 Credential", "key=value"},
		{"unknown parameter", "AWS4-HMAC-SHA256 Foo=bar", "unknown parameter"},
		{"twice", "AWS4-HMAC-SHA256 Credential=a/20260102/r/s/aws4_request, Credential=b", "more than one"},
		{"four elements", "AWS4-HMAC-SHA256 Credential=a/20260102/r/aws4_request, SignedHeaders=host, Signature=" + sig, "5 slash-delimited"},
		{"bad date", "AWS4-HMAC-SHA256 Credential=a/2026012/r/s/aws4_request, SignedHeaders=host, Signature=" + sig, "YYYYMMDD"},
		{"empty key", "AWS4-HMAC-SHA256 Credential=/20260102/r/s/aws4_request, SignedHeaders=host, Signature=" + sig, "empty element"},
		{"upper-case header", "AWS4-HMAC-SHA256 Credential=a/20260102/r/s/aws4_request, SignedHeaders=Host, Signature=" + sig, "lower-case"},
		{"unsorted headers", "AWS4-HMAC-SHA256 Credential=a/20260102/r/s/aws4_request, SignedHeaders=x-amz-date;host, Signature=" + sig, "sorted"},
		{"empty header", "AWS4-HMAC-SHA256 Credential=a/20260102/r/s/aws4_request, SignedHeaders=host;;x, Signature=" + sig, "lower-case"},
		{"short signature", "AWS4-HMAC-SHA256 Credential=a/20260102/r/s/aws4_request, SignedHeaders=host, Signature=abc", "64"},
		{"upper-case signature", "AWS4-HMAC-SHA256 Credential=a/20260102/r/s/aws4_request, SignedHeaders=host, Signature=" + strings.ToUpper(sig), "64"},
	} {
		_, err := parseAuthorization(tc.header)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeIncompleteSignature || !strings.Contains(e.Message, tc.message) {
			t.Errorf("%s: got %v, want %s containing %q", tc.name, err, CodeIncompleteSignature, tc.message)
		}
	}
}

func FuzzParseAuthorization(f *testing.F) {
	sig := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{
		"AWS4-HMAC-SHA256 Credential=AKID/20260102/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20260102/us-east-1/lambda/aws4_request,SignedHeaders=host,Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/b/c/d/e/f, SignedHeaders=, Signature=",
		"AWS4-HMAC-SHA256 ,,,=,==",
		"AWS4-HMAC-SHA256",
		"Bearer token",
		"",
		"AWS4-HMAC-SHA256 Credential=\xff/20260102/r/s/aws4_request, SignedHeaders=h\x00, Signature=" + sig,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAuthorization(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeIncompleteSignature || e.Message == "" {
				t.Fatalf("error %v is not an IncompleteSignatureException", err)
			}
			return
		}
		if a.keyID == "" || len(a.date) != 8 || a.region == "" || a.service == "" || len(a.signature) != 64 || a.signed == "" {
			t.Fatalf("parsed %q into an incomplete %+v", s, a)
		}
		headers := a.headers()
		for i, h := range headers {
			if h == "" || (i > 0 && headers[i-1] >= h) {
				t.Fatalf("parsed %q into headers %q", s, headers)
			}
		}
		if !strings.Contains(s, "Credential="+a.keyID+"/"+a.scope()) {
			t.Fatalf("parsed %q into scope %q", s, a.scope())
		}
	})
}
