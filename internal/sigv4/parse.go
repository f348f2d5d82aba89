package sigv4

import (
	"strings"
)

// authorization is a parsed SigV4 Authorization header:
//
//	AWS4-HMAC-SHA256 Credential=AKID/20260102/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=hex
type authorization struct {
	keyID      string
	date       string // YYYYMMDD of the credential scope
	region     string
	service    string
	terminator string // aws4_request
	signed     string // SignedHeaders: lower-case names, sorted, joined by ';'
	signature  string // 64 lower-case hex digits
}

// headers returns the signed headers' names.
func (a *authorization) headers() []string { return strings.Split(a.signed, ";") }

// signs reports whether the header name is signed.
func (a *authorization) signs(name string) bool {
	for h := range strings.SplitSeq(a.signed, ";") {
		if h == name {
			return true
		}
	}
	return false
}

// scope is the credential scope: DATE/REGION/SERVICE/aws4_request.
func (a *authorization) scope() string {
	return a.date + "/" + a.region + "/" + a.service + "/" + a.terminator
}

// parseAuthorization parses an Authorization header value of the
// AWS4-HMAC-SHA256 scheme. Its errors are *Error values with AWS's codes:
// IncompleteSignatureException for a header that lacks a part or has one
// of the wrong shape.
func parseAuthorization(v string) (authorization, error) {
	rest, ok := strings.CutPrefix(v, algorithm)
	if !ok || (rest != "" && rest[0] != ' ') {
		return authorization{}, incomplete("Authorization header must use the " + algorithm + " algorithm.")
	}
	var a authorization
	var cred, signed, sig string
	var haveCred, haveSigned, haveSig bool
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return authorization{}, incomplete("Authorization header requires each component to be of the form key=value: " + quoteShort(part) + ".")
		}
		switch k {
		case "Credential":
			if haveCred {
				return authorization{}, incomplete("Authorization header has more than one 'Credential' parameter.")
			}
			cred, haveCred = val, true
		case "SignedHeaders":
			if haveSigned {
				return authorization{}, incomplete("Authorization header has more than one 'SignedHeaders' parameter.")
			}
			signed, haveSigned = val, true
		case "Signature":
			if haveSig {
				return authorization{}, incomplete("Authorization header has more than one 'Signature' parameter.")
			}
			sig, haveSig = val, true
		default:
			return authorization{}, incomplete("Authorization header has an unknown parameter " + quoteShort(k) + ".")
		}
	}
	var missing []string
	if !haveCred {
		missing = append(missing, "Authorization header requires 'Credential' parameter.")
	}
	if !haveSig {
		missing = append(missing, "Authorization header requires 'Signature' parameter.")
	}
	if !haveSigned {
		missing = append(missing, "Authorization header requires 'SignedHeaders' parameter.")
	}
	if len(missing) > 0 {
		return authorization{}, incomplete(strings.Join(missing, " "))
	}

	if strings.Count(cred, "/") != 4 {
		return authorization{}, incomplete("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got " + quoteShort(cred) + ".")
	}
	rest = cred
	a.keyID, rest, _ = strings.Cut(rest, "/")
	a.date, rest, _ = strings.Cut(rest, "/")
	a.region, rest, _ = strings.Cut(rest, "/")
	a.service, a.terminator, _ = strings.Cut(rest, "/")
	if a.keyID == "" || a.region == "" || a.service == "" {
		return authorization{}, incomplete("Credential has an empty element: " + quoteShort(cred) + ".")
	}
	if !isDate(a.date) {
		return authorization{}, incomplete("Credential's date must be YYYYMMDD, got " + quoteShort(a.date) + ".")
	}

	if signed == "" {
		return authorization{}, incomplete("Authorization header's 'SignedHeaders' parameter is empty.")
	}
	a.signed = signed
	prev := ""
	for h := range strings.SplitSeq(signed, ";") {
		if h == "" || !isLowerToken(h) {
			return authorization{}, incomplete("SignedHeaders must be lower-case header names separated by ';', got " + quoteShort(signed) + ".")
		}
		if prev != "" && prev >= h {
			return authorization{}, incomplete("SignedHeaders must be sorted and without repeats, got " + quoteShort(signed) + ".")
		}
		prev = h
	}

	if len(sig) != 64 || !isLowerHex(sig) {
		return authorization{}, incomplete("Signature must be 64 lower-case hexadecimal digits.")
	}
	a.signature = sig
	return a, nil
}

// quoteShort quotes s for a message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return "'" + strings.ToValidUTF8(s, "?") + "'"
}

func isDate(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isLowerToken reports whether s is an HTTP field name (RFC 9110 token)
// without upper-case letters.
func isLowerToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return false
		}
	}
	return isToken(s)
}

// isToken reports whether s is an HTTP field name (RFC 9110 token).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
