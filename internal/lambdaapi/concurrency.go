package lambdaapi

import (
	"errors"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("PutFunctionConcurrency", (*API).putFunctionConcurrency)
	handle("GetFunctionConcurrency", (*API).getFunctionConcurrency)
	handle("DeleteFunctionConcurrency", (*API).deleteFunctionConcurrency)
}

// Reserved concurrency, with Lambda's meaning: N ≥ 1 caps the function's
// concurrent invocations at N (its MaxConcurrency); 0 throttles every
// invocation of every version (Throttled); deleting it lifts the
// throttle and gives the function the default concurrency back. Each is
// a new $LATEST with the same code.
//
// A function has reserved concurrency when it is throttled or when its
// MaxConcurrency is not the default (Lambda's 100, within the server's
// cap): a function deployed natively with --max-concurrency has it too.

// reserved is the reserved concurrency cfg has, if any.
func (l serverLimits) reserved(cfg *stratus.FunctionConfig) (int, bool) {
	switch {
	case cfg.Throttled:
		return 0, true
	case cfg.MaxConcurrency != l.defaultConcurrency():
		return cfg.MaxConcurrency, true
	}
	return 0, false
}

// concurrency is Lambda's Concurrency and GetFunctionConcurrencyResponse.
type concurrency struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions,omitempty"`
}

// unqualified is the function a FunctionName without a qualifier names,
// for operations on a function as a whole.
func (c *call) unqualified(op string) (string, error) {
	ref, err := c.function()
	if err != nil {
		return "", err
	}
	if ref.Qualifier != "" {
		return "", invalidParameter("%s applies to the whole function: name it without a qualifier (not %q)", op, ref.Qualifier)
	}
	return ref.Name, nil
}

func (a *API) putFunctionConcurrency(c *call) error {
	name, err := c.unqualified("PutFunctionConcurrency")
	if err != nil {
		return err
	}
	var req concurrency
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.ReservedConcurrentExecutions == nil {
		return invalidParameter("ReservedConcurrentExecutions is required")
	}
	n := *req.ReservedConcurrentExecutions
	lim := a.limits()
	switch {
	case n < 0:
		return invalidParameter("ReservedConcurrentExecutions %d: must be 0 (throttle every invocation) or more", n)
	case n > lim.maxConcurrency:
		return invalidParameter("Specified ReservedConcurrentExecutions for function %s (%d) is more than this server's ConcurrentExecutions (%d, its --max-instances): reserve at most %d",
			name, n, lim.maxConcurrency, lim.maxConcurrency)
	}
	_, err = a.fns.Configure(c.r.Context(), name, func(cfg *stratus.FunctionConfig) error {
		if n == 0 {
			cfg.Throttled = true
			return nil
		}
		cfg.Throttled, cfg.MaxConcurrency = false, n
		if cfg.MinInstances > n {
			return invalidParameter("ReservedConcurrentExecutions %d: less than the function's %d minimum instances (lower them first: stratus deploy --min-instances)", n, cfg.MinInstances)
		}
		return nil
	})
	if err != nil {
		return concurrencyError(err)
	}
	return c.reply(concurrency{ReservedConcurrentExecutions: &n})
}

// concurrencyError names the field of a refused configuration.
func concurrencyError(err error) error {
	var e *Error
	if !errors.As(err, &e) && errors.Is(err, stratus.ErrInvalid) {
		return invalidParameter("ReservedConcurrentExecutions: %s", err.Error())
	}
	return err
}

func (a *API) getFunctionConcurrency(c *call) error {
	name, err := c.unqualified("GetFunctionConcurrency")
	if err != nil {
		return err
	}
	f, err := a.fns.Get(c.r.Context(), name)
	if err != nil {
		return err
	}
	var out concurrency
	if n, ok := a.limits().reserved(&f.Config); ok {
		out.ReservedConcurrentExecutions = &n
	}
	return c.reply(out)
}

func (a *API) deleteFunctionConcurrency(c *call) error {
	name, err := c.unqualified("DeleteFunctionConcurrency")
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	f, err := a.fns.Get(ctx, name)
	if err != nil {
		return err
	}
	lim := a.limits()
	if _, ok := lim.reserved(&f.Config); ok {
		_, err = a.fns.Configure(ctx, name, func(cfg *stratus.FunctionConfig) error {
			cfg.Throttled, cfg.MaxConcurrency = false, lim.defaultConcurrency()
			cfg.MinInstances = min(cfg.MinInstances, cfg.MaxConcurrency)
			return nil
		})
		if err != nil {
			return concurrencyError(err)
		}
	}
	return c.noContent()
}
