package lambdaapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

func init() {
	handle("CreateFunctionUrlConfig", (*API).createFunctionURLConfig)
	handle("GetFunctionUrlConfig", (*API).getFunctionURLConfig)
	handle("UpdateFunctionUrlConfig", (*API).updateFunctionURLConfig)
	handle("DeleteFunctionUrlConfig", (*API).deleteFunctionURLConfig)
	handle("ListFunctionUrlConfigs", (*API).listFunctionURLConfigs)
}

// A function URL is the function's own route on this server,
// http://HOST/fn/NAME/ (HOST as the request names the server). Its
// AuthType is the function's auth mode: NONE is stratus.AuthNone (no
// token), AWS_IAM stratus.AuthSigned (a SigV4 signature by one of the
// server's access keys, or the token); a function whose route takes the
// token only (AuthToken) reports AWS_IAM too. Deleting the URL gives the
// route back the token auth. Stratus keeps one URL per function, for
// $LATEST: a qualifier is refused. Cors is kept and returned, not applied
// (the function's own response headers decide); InvokeMode is BUFFERED
// (RESPONSE_STREAM is refused).

// urlKeeper keeps function URLs (*functions.Service).
type urlKeeper interface {
	URL(ctx context.Context, name string) (*store.FunctionURL, error)
	PutURL(ctx context.Context, u store.FunctionURL, auth string, create bool) (*store.FunctionURL, error)
	DeleteURL(ctx context.Context, name string) error
}

// Values of FunctionUrlAuthType and InvokeMode.
const (
	authTypeNone   = "NONE"
	authTypeIAM    = "AWS_IAM"
	invokeBuffered = "BUFFERED"
	invokeStream   = "RESPONSE_STREAM"
)

// cors is Lambda's Cors.
type cors struct {
	AllowCredentials *bool    `json:"AllowCredentials,omitempty"`
	AllowHeaders     []string `json:"AllowHeaders,omitempty"`
	AllowMethods     []string `json:"AllowMethods,omitempty"`
	AllowOrigins     []string `json:"AllowOrigins,omitempty"`
	ExposeHeaders    []string `json:"ExposeHeaders,omitempty"`
	MaxAge           *int     `json:"MaxAge,omitempty"`
}

// check applies the model's bounds.
func (c *cors) check() error {
	for _, l := range []struct {
		field string
		items []string
		n     int
		size  int
	}{{"AllowHeaders", c.AllowHeaders, 100, 1024}, {"ExposeHeaders", c.ExposeHeaders, 100, 1024}, {"AllowMethods", c.AllowMethods, 6, 6}, {"AllowOrigins", c.AllowOrigins, 100, 253}} {
		if len(l.items) > l.n {
			return invalidParameter("Cors.%s: at most %d items", l.field, l.n)
		}
		for _, s := range l.items {
			if len(s) > l.size || (l.field == "AllowOrigins" && s == "") {
				return invalidParameter("Cors.%s %q: must be 1 to %d characters", l.field, s, l.size)
			}
		}
	}
	if c.MaxAge != nil && (*c.MaxAge < 0 || *c.MaxAge > 86400) {
		return invalidParameter("Cors.MaxAge %d: must be between 0 and 86400", *c.MaxAge)
	}
	return nil
}

type functionURLRequest struct {
	AuthType   string `json:"AuthType"`
	Cors       *cors  `json:"Cors"`
	InvokeMode string `json:"InvokeMode"`
}

// functionURLConfig is Lambda's FunctionUrlConfig and the answers of the
// URL operations (CreateFunctionUrlConfig's has no LastModifiedTime).
type functionURLConfig struct {
	FunctionURL      string `json:"FunctionUrl"`
	FunctionArn      string `json:"FunctionArn"`
	AuthType         string `json:"AuthType"`
	Cors             *cors  `json:"Cors,omitempty"`
	CreationTime     string `json:"CreationTime"`
	LastModifiedTime string `json:"LastModifiedTime,omitempty"`
	InvokeMode       string `json:"InvokeMode"`
}

// isoTime writes t as the URL operations' Timestamp: ISO 8601 in UTC,
// to the microsecond.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// urls is the urlKeeper, if Functions is one.
func (a *API) urls() (urlKeeper, error) {
	u, ok := a.fns.(urlKeeper)
	if !ok {
		return nil, &Error{Type: "ServiceException", Status: http.StatusNotImplemented, Message: "this server keeps no function URLs"}
	}
	return u, nil
}

// urlFunction is the function a URL operation names: without a
// qualifier, or $LATEST.
func (c *call) urlFunction() (string, error) {
	ref, err := c.function()
	if err != nil {
		return "", err
	}
	if !ref.Latest() {
		return "", invalidParameter("qualifier %q: Stratus keeps one function URL per function, for $LATEST (/fn/NAME/); /fn/NAME:%s/ reaches the alias with the function's auth", ref.Qualifier, ref.Qualifier)
	}
	return ref.Name, nil
}

// authMode maps an AuthType onto a Stratus auth mode.
func authMode(t string) (string, error) {
	switch t {
	case authTypeNone:
		return stratus.AuthNone, nil
	case authTypeIAM:
		return stratus.AuthSigned, nil
	}
	return "", invalidParameter("AuthType %q: want %s or %s", t, authTypeNone, authTypeIAM)
}

// authType is the AuthType of a Stratus auth mode.
func authType(mode string) string {
	if mode == stratus.AuthNone {
		return authTypeNone
	}
	return authTypeIAM
}

// invokeMode checks an InvokeMode (empty: BUFFERED).
func invokeMode(m string) (string, error) {
	switch m {
	case "", invokeBuffered:
		return invokeBuffered, nil
	case invokeStream:
		return "", invalidParameter("InvokeMode %s: response streaming is not supported by Stratus; use %s", invokeStream, invokeBuffered)
	}
	return "", invalidParameter("InvokeMode %q: want %s", m, invokeBuffered)
}

// urlConfig is u in Lambda's shape.
func (a *API) urlConfig(c *call, u *store.FunctionURL) (functionURLConfig, error) {
	f, err := a.fns.Get(c.r.Context(), u.Function)
	if err != nil {
		return functionURLConfig{}, err
	}
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	out := functionURLConfig{
		FunctionURL: scheme + "://" + c.r.Host + "/fn/" + u.Function + "/",
		FunctionArn: a.arn(u.Function, ""), AuthType: authType(f.Config.Auth),
		CreationTime: isoTime(u.CreatedAt), LastModifiedTime: isoTime(u.UpdatedAt), InvokeMode: u.InvokeMode,
	}
	if u.Cors != "" {
		var cs cors
		if err := json.Unmarshal([]byte(u.Cors), &cs); err == nil {
			out.Cors = &cs
		}
	}
	return out, nil
}

// putURL creates or updates the URL of the function c names.
func (a *API) putURL(c *call, create bool) error {
	keeper, err := a.urls()
	if err != nil {
		return err
	}
	name, err := c.urlFunction()
	if err != nil {
		return err
	}
	var req functionURLRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	ctx := c.r.Context()
	u := store.FunctionURL{Function: name}
	if !create {
		old, err := keeper.URL(ctx, name)
		if err != nil {
			return a.noURL(ctx, name, err)
		}
		u = *old
	}
	auth := ""
	if req.AuthType != "" || create {
		if auth, err = authMode(req.AuthType); err != nil {
			return err
		}
	}
	if req.InvokeMode != "" || create {
		if u.InvokeMode, err = invokeMode(req.InvokeMode); err != nil {
			return err
		}
	}
	if req.Cors != nil {
		if err := req.Cors.check(); err != nil {
			return err
		}
		b, err := json.Marshal(req.Cors)
		if err != nil {
			return err
		}
		u.Cors = string(b)
	}
	if _, err := a.fns.Get(ctx, name); err != nil {
		return err
	}
	out, err := keeper.PutURL(ctx, u, auth, create)
	if err != nil {
		return a.noURL(ctx, name, err)
	}
	cfg, err := a.urlConfig(c, out)
	if err != nil {
		return err
	}
	if create {
		cfg.LastModifiedTime = ""
	}
	return c.reply(cfg)
}

// noURL words a missing URL as Lambda does, when the function exists.
func (a *API) noURL(ctx context.Context, name string, err error) error {
	if errorFrom(nil, err).Type != "ResourceNotFoundException" {
		return err
	}
	if _, ferr := a.fns.Get(ctx, name); ferr != nil {
		return ferr
	}
	return notFound("The resource you requested does not exist: function %s has no function URL", a.arn(name, ""))
}

func (a *API) createFunctionURLConfig(c *call) error { return a.putURL(c, true) }

func (a *API) updateFunctionURLConfig(c *call) error { return a.putURL(c, false) }

func (a *API) getFunctionURLConfig(c *call) error {
	keeper, err := a.urls()
	if err != nil {
		return err
	}
	name, err := c.urlFunction()
	if err != nil {
		return err
	}
	u, err := keeper.URL(c.r.Context(), name)
	if err != nil {
		return a.noURL(c.r.Context(), name, err)
	}
	out, err := a.urlConfig(c, u)
	if err != nil {
		return err
	}
	return c.reply(out)
}

func (a *API) deleteFunctionURLConfig(c *call) error {
	keeper, err := a.urls()
	if err != nil {
		return err
	}
	name, err := c.urlFunction()
	if err != nil {
		return err
	}
	if err := keeper.DeleteURL(c.r.Context(), name); err != nil {
		return a.noURL(c.r.Context(), name, err)
	}
	return c.noContent()
}

type listFunctionURLConfigsResponse struct {
	FunctionURLConfigs []functionURLConfig `json:"FunctionUrlConfigs"`
	NextMarker         string              `json:"NextMarker,omitempty"`
}

// listFunctionURLConfigs lists the function's one URL, if it has one.
func (a *API) listFunctionURLConfigs(c *call) error {
	keeper, err := a.urls()
	if err != nil {
		return err
	}
	name, err := c.unqualified("ListFunctionUrlConfigs")
	if err != nil {
		return err
	}
	if s := c.query("MaxItems"); s != "" {
		if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 50 {
			return invalidParameter("MaxItems %q: want 1 to 50", s)
		}
	}
	ctx := c.r.Context()
	if _, err := a.fns.Get(ctx, name); err != nil {
		return err
	}
	out := listFunctionURLConfigsResponse{FunctionURLConfigs: []functionURLConfig{}}
	u, err := keeper.URL(ctx, name)
	switch {
	case err == nil && c.query("Marker") == "":
		cfg, err := a.urlConfig(c, u)
		if err != nil {
			return err
		}
		out.FunctionURLConfigs = append(out.FunctionURLConfigs, cfg)
	case err != nil && errorFrom(nil, err).Type != "ResourceNotFoundException":
		return err
	}
	return c.reply(out)
}
