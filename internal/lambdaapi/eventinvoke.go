package lambdaapi

import (
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("PutFunctionEventInvokeConfig", (*API).putFunctionEventInvokeConfig)
	handle("UpdateFunctionEventInvokeConfig", (*API).updateFunctionEventInvokeConfig)
	handle("GetFunctionEventInvokeConfig", (*API).getFunctionEventInvokeConfig)
	handle("DeleteFunctionEventInvokeConfig", (*API).deleteFunctionEventInvokeConfig)
	handle("ListFunctionEventInvokeConfigs", (*API).listFunctionEventInvokeConfigs)
}

// A function's asynchronous invocation configuration (Lambda's
// EventInvokeConfig) is its FunctionConfig's MaxRetries, MaxEventAge,
// OnSuccess and OnFailure; setting it makes a new $LATEST with the same
// code. Stratus keeps one per function, for every version and alias: a
// qualifier other than $LATEST is refused. A function has one when any
// of those fields is set; PutFunctionEventInvokeConfig always sets
// MaxRetries (to Lambda's default, 2, when the request leaves it out), so
// that a configuration put with no fields exists too.
//
// Destinations map onto Stratus's own: a Lambda function's ARN (without a
// qualifier) to "function:NAME", an SNS topic's or an EventBridge event
// bus's ARN to the Stratus topic of that name ("topic:NAME"), which must
// exist. Other destinations (SQS queues, S3 buckets) are refused.

// Bounds of MaximumEventAgeInSeconds, as on Lambda.
const (
	minEventAgeSec = 60
	maxEventAgeSec = 21600
)

// destination is Lambda's OnSuccess and OnFailure.
type destination struct {
	Destination *string `json:"Destination,omitempty"`
}

// destinationConfig is Lambda's DestinationConfig.
type destinationConfig struct {
	OnSuccess *destination `json:"OnSuccess,omitempty"`
	OnFailure *destination `json:"OnFailure,omitempty"`
}

// eventInvokeConfigRequest is the body of PutFunctionEventInvokeConfig
// and UpdateFunctionEventInvokeConfig.
type eventInvokeConfigRequest struct {
	MaximumRetryAttempts     *int               `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds *int               `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        *destinationConfig `json:"DestinationConfig"`
}

// functionEventInvokeConfig is Lambda's FunctionEventInvokeConfig.
// LastModified is a timestamp of the model's default format for JSON:
// seconds since the epoch, with fractions.
type functionEventInvokeConfig struct {
	LastModified             float64           `json:"LastModified"`
	FunctionArn              string            `json:"FunctionArn"`
	MaximumRetryAttempts     *int              `json:"MaximumRetryAttempts,omitempty"`
	MaximumEventAgeInSeconds *int              `json:"MaximumEventAgeInSeconds,omitempty"`
	DestinationConfig        destinationConfig `json:"DestinationConfig"`
}

// epochSeconds writes t as the model's JSON timestamps: seconds since the
// epoch, to the millisecond.
func epochSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// hasEventInvokeConfig reports whether cfg carries an asynchronous
// invocation configuration.
func hasEventInvokeConfig(cfg *stratus.FunctionConfig) bool {
	return cfg.MaxRetries != nil || cfg.MaxEventAge != 0 || cfg.OnSuccess != "" || cfg.OnFailure != ""
}

// eventInvokeFunction is the function an event-invoke operation names:
// unqualified or $LATEST.
func (c *call) eventInvokeFunction() (string, error) {
	ref, err := c.function()
	if err != nil {
		return "", err
	}
	if !ref.Latest() {
		return "", invalidParameter("qualifier %q: Stratus keeps one asynchronous invocation configuration per function, for all its versions and aliases: name the function without a qualifier or with $LATEST", ref.Qualifier)
	}
	return ref.Name, nil
}

// eventInvokeConfigOf is f's configuration in Lambda's shape.
func (a *API) eventInvokeConfigOf(f *stratus.Function) functionEventInvokeConfig {
	cfg := &f.Config
	retries := cfg.Retries()
	out := functionEventInvokeConfig{
		LastModified: epochSeconds(f.UpdatedAt), FunctionArn: a.arn(f.Name, stratus.LatestVersion),
		MaximumRetryAttempts: &retries,
		DestinationConfig:    destinationConfig{OnSuccess: &destination{}, OnFailure: &destination{}},
	}
	if cfg.MaxEventAge != 0 {
		age := int(time.Duration(cfg.MaxEventAge) / time.Second)
		out.MaximumEventAgeInSeconds = &age
	}
	if cfg.OnSuccess != "" {
		arn := a.destinationARN(cfg.OnSuccess)
		out.DestinationConfig.OnSuccess.Destination = &arn
	}
	if cfg.OnFailure != "" {
		arn := a.destinationARN(cfg.OnFailure)
		out.DestinationConfig.OnFailure.Destination = &arn
	}
	return out
}

// destinationARN is the ARN of Stratus destination d: a function's, or
// for a topic an SNS topic's ARN in the server's region and account.
func (a *API) destinationARN(d string) string {
	kind, name, ok := strings.Cut(d, ":")
	if !ok {
		return d
	}
	switch kind {
	case stratus.DestFunction:
		fn, q, _ := strings.Cut(name, ":")
		return a.arn(fn, q)
	case stratus.DestTopic:
		return "arn:aws:sns:" + a.region + ":" + a.account + ":" + name
	}
	return d
}

// stratusDestination maps a destination ARN onto a Stratus destination
// ("" for none).
func stratusDestination(field, arn string) (string, error) {
	if arn == "" {
		return "", nil
	}
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" {
		return "", invalidParameter("%s %q: not an ARN: name a Lambda function, an SNS topic or an EventBridge event bus", field, arn)
	}
	service, resource := parts[2], parts[5]
	var d string
	switch service {
	case "lambda":
		ref, err := stratus.ParseFunctionRef(arn)
		if err != nil {
			return "", invalidParameter("%s: %s", field, err.Error())
		}
		d = stratus.DestFunction + ":" + ref.String()
		if ref.Qualifier != "" {
			if _, _, err := stratus.ParseDestination(d); err != nil {
				return "", invalidParameter("%s %q: a function destination with a qualifier is not supported by Stratus: name the function without one (its $LATEST runs)", field, arn)
			}
		}
	case "sns":
		d = stratus.DestTopic + ":" + resource
	case "events":
		bus, ok := strings.CutPrefix(resource, "event-bus/")
		if !ok {
			return "", invalidParameter("%s %q: an EventBridge destination is an event bus (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)", field, arn)
		}
		d = stratus.DestTopic + ":" + bus
	case "sqs":
		return "", invalidParameter("%s %q: SQS queues are not supported by Stratus as destinations: use a function, or a Stratus topic named by an SNS topic or EventBridge bus ARN", field, arn)
	default:
		return "", invalidParameter("%s %q: %s destinations are not supported by Stratus: use a Lambda function, or a Stratus topic named by an SNS topic or EventBridge bus ARN", field, arn, service)
	}
	if _, _, err := stratus.ParseDestination(d); err != nil {
		return "", invalidParameter("%s %q: %s", field, arn, err.Error())
	}
	return d, nil
}

// apply sets the fields req has on cfg.
func (req *eventInvokeConfigRequest) apply(cfg *stratus.FunctionConfig) error {
	if r := req.MaximumRetryAttempts; r != nil {
		if *r < 0 {
			return invalidParameter("MaximumRetryAttempts %d: must be 0 or more", *r)
		}
		n := *r
		cfg.MaxRetries = &n
	}
	if age := req.MaximumEventAgeInSeconds; age != nil {
		if *age < minEventAgeSec || *age > maxEventAgeSec {
			return invalidParameter("MaximumEventAgeInSeconds %d: must be between %d and %d", *age, minEventAgeSec, maxEventAgeSec)
		}
		cfg.MaxEventAge = stratus.Duration(time.Duration(*age) * time.Second)
	}
	if dc := req.DestinationConfig; dc != nil {
		for _, d := range []struct {
			field string
			in    *destination
			out   *string
		}{{"DestinationConfig.OnSuccess.Destination", dc.OnSuccess, &cfg.OnSuccess}, {"DestinationConfig.OnFailure.Destination", dc.OnFailure, &cfg.OnFailure}} {
			if d.in == nil {
				continue
			}
			arn := ""
			if d.in.Destination != nil {
				arn = *d.in.Destination
			}
			dest, err := stratusDestination(d.field, arn)
			if err != nil {
				return err
			}
			*d.out = dest
		}
	}
	return nil
}

// clearEventInvokeConfig removes cfg's asynchronous invocation
// configuration: the defaults apply again.
func clearEventInvokeConfig(cfg *stratus.FunctionConfig) {
	cfg.MaxRetries, cfg.MaxEventAge, cfg.OnSuccess, cfg.OnFailure = nil, 0, "", ""
}

// noEventInvokeConfig is the error for a function without one.
func (a *API) noEventInvokeConfig(name string) error {
	return notFound("The function %s doesn't have an EventInvokeConfig", a.arn(name, stratus.LatestVersion))
}

// putFunctionEventInvokeConfig replaces the function's configuration.
func (a *API) putFunctionEventInvokeConfig(c *call) error {
	return a.setEventInvokeConfig(c, true)
}

// updateFunctionEventInvokeConfig changes the fields it is given.
func (a *API) updateFunctionEventInvokeConfig(c *call) error {
	return a.setEventInvokeConfig(c, false)
}

func (a *API) setEventInvokeConfig(c *call, replace bool) error {
	name, err := c.eventInvokeFunction()
	if err != nil {
		return err
	}
	var req eventInvokeConfigRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	f, err := a.fns.Configure(c.r.Context(), name, func(cfg *stratus.FunctionConfig) error {
		if replace {
			clearEventInvokeConfig(cfg)
			r := stratus.DefaultMaxRetries
			cfg.MaxRetries = &r
		} else if !hasEventInvokeConfig(cfg) {
			return a.noEventInvokeConfig(name)
		}
		return req.apply(cfg)
	})
	if err != nil {
		return err
	}
	return c.reply(a.eventInvokeConfigOf(f))
}

func (a *API) getFunctionEventInvokeConfig(c *call) error {
	name, err := c.eventInvokeFunction()
	if err != nil {
		return err
	}
	f, err := a.fns.Get(c.r.Context(), name)
	if err != nil {
		return err
	}
	if !hasEventInvokeConfig(&f.Config) {
		return a.noEventInvokeConfig(name)
	}
	return c.reply(a.eventInvokeConfigOf(f))
}

func (a *API) deleteFunctionEventInvokeConfig(c *call) error {
	name, err := c.eventInvokeFunction()
	if err != nil {
		return err
	}
	_, err = a.fns.Configure(c.r.Context(), name, func(cfg *stratus.FunctionConfig) error {
		if !hasEventInvokeConfig(cfg) {
			return a.noEventInvokeConfig(name)
		}
		clearEventInvokeConfig(cfg)
		return nil
	})
	if err != nil {
		return err
	}
	return c.noContent()
}

type listEventInvokeConfigsResponse struct {
	FunctionEventInvokeConfigs []functionEventInvokeConfig `json:"FunctionEventInvokeConfigs"`
	NextMarker                 string                      `json:"NextMarker,omitempty"`
}

// listFunctionEventInvokeConfigs lists the function's one configuration,
// if it has one.
func (a *API) listFunctionEventInvokeConfigs(c *call) error {
	name, err := c.unqualified("ListFunctionEventInvokeConfigs")
	if err != nil {
		return err
	}
	if s := c.query("MaxItems"); s != "" {
		if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 50 {
			return invalidParameter("MaxItems %q: want 1 to 50", s)
		}
	}
	f, err := a.fns.Get(c.r.Context(), name)
	if err != nil {
		return err
	}
	out := listEventInvokeConfigsResponse{FunctionEventInvokeConfigs: []functionEventInvokeConfig{}}
	if hasEventInvokeConfig(&f.Config) && c.query("Marker") == "" {
		out.FunctionEventInvokeConfigs = append(out.FunctionEventInvokeConfigs, a.eventInvokeConfigOf(f))
	}
	return c.reply(out)
}
