package stratus

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultAccountID is the account in the ARNs a server writes unless its
// configuration names another (Lambda's documentation uses this
// placeholder too).
const DefaultAccountID = "000000000000"

// Limits of versions and aliases, as on Lambda.
const (
	MaxAliasNameSize = 128
	// MaxAliasWeights is how many versions besides its own an alias may
	// send a share of its invocations to.
	MaxAliasWeights = 1
)

var (
	aliasRE   = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE  = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
)

// FunctionRef names a function and, optionally, what of it runs: a
// qualifier is LatestVersion, a published version's number or an alias.
// The empty qualifier means LatestVersion.
type FunctionRef struct {
	Name      string
	Qualifier string
}

// String is "NAME" or "NAME:QUALIFIER".
func (r FunctionRef) String() string {
	if r.Qualifier == "" {
		return r.Name
	}
	return r.Name + ":" + r.Qualifier
}

// Latest reports whether r names the function's $LATEST.
func (r FunctionRef) Latest() bool { return r.Qualifier == "" || r.Qualifier == LatestVersion }

// Version returns the version number r names, if its qualifier is one.
func (r FunctionRef) Version() (int, bool) {
	n, err := strconv.Atoi(r.Qualifier)
	if err != nil || n < 1 || r.Qualifier[0] == '0' || r.Qualifier[0] == '+' {
		return 0, false
	}
	return n, true
}

// Alias returns the alias r names, if its qualifier is one.
func (r FunctionRef) Alias() (string, bool) {
	if r.Latest() {
		return "", false
	}
	if _, ok := r.Version(); ok {
		return "", false
	}
	return r.Qualifier, true
}

// ParseFunctionRef reads a function named as Lambda's API accepts it:
// "NAME", "NAME:QUALIFIER", a partial ARN "ACCOUNT:function:NAME[:Q]" or
// a full ARN "arn:aws:lambda:REGION:ACCOUNT:function:NAME[:Q]". The
// caller URL-decodes it first. The region and account of an ARN are not
// checked against the server's: a client may have been configured for
// any region. Anything else is an error wrapping ErrInvalid.
func ParseFunctionRef(s string) (FunctionRef, error) {
	bad := func(why string) (FunctionRef, error) {
		return FunctionRef{}, fmt.Errorf("function name %q: %s: %w", s, why, ErrInvalid)
	}
	parts := strings.Split(s, ":")
	switch {
	case len(parts) >= 7 && parts[0] == "arn":
		if len(parts) > 8 || parts[1] == "" || parts[2] != "lambda" || !regionRE.MatchString(parts[3]) ||
			!accountRE.MatchString(parts[4]) || parts[5] != "function" {
			return bad("not a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])")
		}
		parts = parts[6:]
	case len(parts) >= 3 && parts[1] == "function":
		if len(parts) > 4 || !accountRE.MatchString(parts[0]) {
			return bad("not a partial ARN (ACCOUNT:function:NAME[:QUALIFIER])")
		}
		parts = parts[2:]
	case len(parts) > 2:
		return bad("want NAME, NAME:QUALIFIER or an ARN")
	}
	r := FunctionRef{Name: parts[0]}
	if err := ValidName(r.Name); err != nil {
		return FunctionRef{}, err
	}
	if len(parts) == 2 {
		r.Qualifier = parts[1]
		if err := ValidQualifier(r.Qualifier); err != nil {
			return FunctionRef{}, err
		}
	}
	return r, nil
}

// ValidQualifier reports whether q is LatestVersion, a version number
// (1, 2, ...) or a valid alias name.
func ValidQualifier(q string) error {
	if q == LatestVersion {
		return nil
	}
	if _, ok := (FunctionRef{Qualifier: q}).Version(); ok {
		return nil
	}
	return ValidAliasName(q)
}

// ValidAliasName reports whether s may name an alias: 1-128 characters
// of A-Z, a-z, 0-9, '-' or '_', not all digits (those name versions).
func ValidAliasName(s string) error {
	if !aliasRE.MatchString(s) || strings.Trim(s, "0123456789") == "" {
		return fmt.Errorf("alias %q: must be 1-%d characters of A-Z, a-z, 0-9, '-' or '_', not only digits: %w", s, MaxAliasNameSize, ErrInvalid)
	}
	return nil
}

// FunctionARN is the ARN of function name in region and account, with
// qualifier q when q is not empty.
func FunctionARN(region, account, name, q string) string {
	arn := "arn:aws:lambda:" + region + ":" + account + ":function:" + name
	if q != "" {
		arn += ":" + q
	}
	return arn
}

// ValidAccountID reports whether s is an account ID: 12 digits.
func ValidAccountID(s string) error {
	if !accountRE.MatchString(s) {
		return fmt.Errorf("account ID %q: must be 12 digits: %w", s, ErrInvalid)
	}
	return nil
}

// Alias names a published version of a function (or $LATEST) and, with
// Weights, sends a share of its invocations to one other version, as
// Lambda's routing configuration does.
type Alias struct {
	Function    string `json:"function"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Version is the version the alias points at: "1", "2", ... or
	// LatestVersion.
	Version string `json:"version"`
	// Weights maps at most one other published version to the share of
	// invocations (0 to 1) it takes; Version takes the rest.
	Weights map[string]float64 `json:"weights,omitempty"`
	// RevisionID changes at every update of the alias.
	RevisionID string `json:"revisionId"`
}

// Validate checks a's name, version and weights (their sum at most 1,
// never a weight on LatestVersion nor on a's own version). Whether the
// versions exist is the store's to check.
func (a *Alias) Validate() error {
	if err := ValidAliasName(a.Name); err != nil {
		return err
	}
	if a.Version != LatestVersion {
		if _, ok := (FunctionRef{Qualifier: a.Version}).Version(); !ok {
			return fmt.Errorf("alias %q: version %q: must be %s or a published version's number: %w", a.Name, a.Version, LatestVersion, ErrInvalid)
		}
	}
	if len(a.Weights) > MaxAliasWeights {
		return fmt.Errorf("alias %q: weights name %d versions; at most %d: %w", a.Name, len(a.Weights), MaxAliasWeights, ErrInvalid)
	}
	sum := 0.0
	for v, w := range a.Weights {
		if _, ok := (FunctionRef{Qualifier: v}).Version(); !ok {
			return fmt.Errorf("alias %q: weight on %q: only a published version's number takes a weight: %w", a.Name, v, ErrInvalid)
		}
		if v == a.Version {
			return fmt.Errorf("alias %q: weight on version %s, which the alias points at already: %w", a.Name, v, ErrInvalid)
		}
		if a.Version == LatestVersion {
			return fmt.Errorf("alias %q: an alias of %s takes no weights: %w", a.Name, LatestVersion, ErrInvalid)
		}
		if !(w >= 0 && w <= 1) {
			return fmt.Errorf("alias %q: weight %g on version %s: must be between 0 and 1: %w", a.Name, w, v, ErrInvalid)
		}
		sum += w
	}
	if sum > 1 {
		return fmt.Errorf("alias %q: weights sum to %g, more than 1: %w", a.Name, sum, ErrInvalid)
	}
	return nil
}
