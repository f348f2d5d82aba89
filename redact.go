package stratus

import (
	"net/url"
	"strings"
)

// RedactURL is raw as logs and error messages may show it: the password
// of its userinfo and the value of every query parameter whose name holds
// "password" (PostgreSQL's password, sslpassword) replaced by xxxxx. A
// query that does not parse is shown as query=xxxxx, a URL that does not
// parse as "(an unparsable URL)".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			q = url.Values{"query": {"xxxxx"}}
		}
		for k, vs := range q {
			if strings.Contains(strings.ToLower(k), "password") {
				for i := range vs {
					vs[i] = "xxxxx"
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	u.ForceQuery = false
	return u.Redacted()
}
