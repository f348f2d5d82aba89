package lambdaapi

import (
	"context"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("GetAccountSettings", (*API).getAccountSettings)
}

// serverLimiter tells the server's bounds (*functions.Service, when it
// can): the instance cap across all functions (--max-instances) and the
// largest code zip and its unzipped size a deploy takes.
type serverLimiter interface {
	ServerLimits() (maxConcurrency int, maxZipped, maxUnzipped int64)
}

// Bounds reported when Functions does not tell them: the server's
// defaults.
const (
	fallbackMaxZipped   int64 = 50 << 20
	fallbackMaxUnzipped int64 = 250 << 20
	// totalCodeSizeLimit is Lambda's default quota on the code of all
	// functions (75 GiB). Stratus enforces none: the data dir's free
	// space bounds it.
	totalCodeSizeLimit int64 = 75 << 30
)

// serverLimits are the bounds of this server.
type serverLimits struct {
	maxConcurrency         int
	maxZipped, maxUnzipped int64
}

func (a *API) limits() serverLimits {
	if l, ok := a.fns.(serverLimiter); ok {
		c, z, u := l.ServerLimits()
		if c > 0 && z > 0 && u > 0 {
			return serverLimits{maxConcurrency: c, maxZipped: z, maxUnzipped: u}
		}
	}
	return serverLimits{maxConcurrency: stratus.DefaultMaxConc, maxZipped: fallbackMaxZipped, maxUnzipped: fallbackMaxUnzipped}
}

// defaultConcurrency is the concurrency of a function without reserved
// concurrency: Lambda's default within the server's cap, as a deploy
// sets it.
func (l serverLimits) defaultConcurrency() int { return min(stratus.DefaultMaxConc, l.maxConcurrency) }

// accountLimit is Lambda's AccountLimit.
type accountLimit struct {
	TotalCodeSize                  int64 `json:"TotalCodeSize"`
	CodeSizeUnzipped               int64 `json:"CodeSizeUnzipped"`
	CodeSizeZipped                 int64 `json:"CodeSizeZipped"`
	ConcurrentExecutions           int   `json:"ConcurrentExecutions"`
	UnreservedConcurrentExecutions int   `json:"UnreservedConcurrentExecutions"`
}

// accountUsage is Lambda's AccountUsage.
type accountUsage struct {
	TotalCodeSize int64 `json:"TotalCodeSize"`
	FunctionCount int64 `json:"FunctionCount"`
}

type getAccountSettingsResponse struct {
	AccountLimit accountLimit `json:"AccountLimit"`
	AccountUsage accountUsage `json:"AccountUsage"`
}

// getAccountSettings reports the server's bounds and use: its instance
// cap as ConcurrentExecutions, less the functions' reserved concurrency
// as UnreservedConcurrentExecutions (never below 0: in Stratus reserved
// concurrency caps a function, it sets nothing aside), its code limits,
// and the code of every function's $LATEST and published versions.
func (a *API) getAccountSettings(c *call) error {
	ctx := c.r.Context()
	fns, err := a.fns.List(ctx)
	if err != nil {
		return err
	}
	lim := a.limits()
	out := getAccountSettingsResponse{
		AccountLimit: accountLimit{
			TotalCodeSize: totalCodeSizeLimit, CodeSizeUnzipped: lim.maxUnzipped, CodeSizeZipped: lim.maxZipped,
			ConcurrentExecutions: lim.maxConcurrency,
		},
		AccountUsage: accountUsage{FunctionCount: int64(len(fns))},
	}
	reserved := 0
	for i := range fns {
		f := &fns[i]
		if n, ok := lim.reserved(&f.Config); ok {
			reserved += n
		}
		size, err := a.codeSize(ctx, f)
		if err != nil {
			return err
		}
		out.AccountUsage.TotalCodeSize += size
	}
	out.AccountLimit.UnreservedConcurrentExecutions = max(0, lim.maxConcurrency-reserved)
	return c.reply(out)
}

// codeSize is the code size of f's $LATEST and its published versions.
func (a *API) codeSize(ctx context.Context, f *stratus.Function) (int64, error) {
	size := f.CodeSize
	if f.Published == 0 {
		return size, nil
	}
	pub, err := a.fns.PublishedVersions(ctx, f.Name)
	if err != nil {
		return 0, err
	}
	for i := range pub {
		size += pub[i].CodeSize
	}
	return size, nil
}
