package lambdaapi

import (
	"bytes"
	"context"
	"io"
	"strconv"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("UpdateFunctionCode", (*API).updateFunctionCode)
	handle("UpdateFunctionConfiguration", (*API).updateFunctionConfiguration)
	handle("PublishVersion", (*API).publishVersion)
}

// guardedFunctions are the deploys and publishes whose precondition is
// checked where the change is made, with no other deploy, publish or
// remove in between (*functions.Service has them): cond gets the head
// (nil when there is none) and its error is returned as it is.
type guardedFunctions interface {
	DeployNew(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*stratus.Function, error)
	DeployIf(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader, cond func(head *stratus.Version) error) (*stratus.Function, bool, error)
	PublishIf(ctx context.Context, name, description string, cond func(head *stratus.Version) error) (*stratus.Version, error)
}

// guarded is the Functions' guardedFunctions: the operations with a
// precondition need them.
func (a *API) guarded() (guardedFunctions, error) {
	g, ok := a.fns.(guardedFunctions)
	if !ok {
		return nil, &Error{Type: "ServiceException", Status: 501, Message: "this server cannot check a change's precondition"}
	}
	return g, nil
}

// unchanged refuses a change to function f when its head is no longer f:
// another change landed since f was read or made.
func unchanged(f *stratus.Function) func(*stratus.Version) error {
	return func(head *stratus.Version) error {
		if head == nil {
			return notFound("function %q was deleted meanwhile", f.Name)
		}
		if head.Version != f.Version {
			return conflict("function %q changed during this operation: read it again and retry", f.Name)
		}
		return nil
	}
}

// headOf is the head of the function a FunctionName without a qualifier
// names: the operations that change a function take no qualifier.
func (a *API) headOf(c *call, op string) (*stratus.Function, error) {
	ref, err := c.function()
	if err != nil {
		return nil, err
	}
	if ref.Qualifier != "" {
		return nil, invalidParameter("%s changes $LATEST: name the function without a qualifier", op)
	}
	return a.fns.Get(c.r.Context(), ref.Name)
}

// checkRevision refuses a change made against another revision of v.
func checkRevision(v *stratus.Version, want string) error {
	if want != "" && want != revisionID(v) {
		return &Error{Type: "PreconditionFailedException", Message: "RevisionId " + want + " is not the function's current one (" + revisionID(v) + "): read it again and retry"}
	}
	return nil
}

type updateFunctionCodeRequest struct {
	ZipFile         []byte   `json:"ZipFile"`
	S3Bucket        string   `json:"S3Bucket"`
	S3Key           string   `json:"S3Key"`
	S3ObjectVersion string   `json:"S3ObjectVersion"`
	ImageURI        string   `json:"ImageUri"`
	Publish         bool     `json:"Publish"`
	DryRun          bool     `json:"DryRun"`
	RevisionID      string   `json:"RevisionId"`
	Architectures   []string `json:"Architectures"`
}

// updateFunctionCode deploys new code to $LATEST and keeps its
// configuration; with Publish it then publishes a version.
func (a *API) updateFunctionCode(c *call) error {
	var req updateFunctionCodeRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	f, err := a.headOf(c, "UpdateFunctionCode")
	if err != nil {
		return err
	}
	if err := checkRevision(headVersion(f), req.RevisionID); err != nil {
		return err
	}
	if err := a.checkArchitectures(req.Architectures); err != nil {
		return err
	}
	if req.S3Bucket != "" || req.S3Key != "" {
		return invalidParameter("S3Bucket: code from S3 is not supported by Stratus; send ZipFile")
	}
	cfg := f.Config
	var code io.Reader
	if cfg.Image != "" {
		if req.ImageURI == "" || len(req.ZipFile) > 0 {
			return invalidParameter("function %q is of PackageType Image: send ImageUri", f.Name)
		}
		cfg.Image = req.ImageURI
	} else {
		if len(req.ZipFile) == 0 || req.ImageURI != "" {
			return invalidParameter("function %q is of PackageType Zip: send ZipFile", f.Name)
		}
		code = bytes.NewReader(req.ZipFile)
	}
	if req.DryRun {
		return c.reply(a.configuration(headVersion(f), ""))
	}
	g, err := a.guarded()
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	// The checks again, on the head the deploy replaces: RevisionId, and
	// that no change landed since f was read (its configuration is kept).
	read := unchanged(f)
	f, _, err = g.DeployIf(ctx, f.Name, cfg, code, func(head *stratus.Version) error {
		if head != nil {
			if err := checkRevision(head, req.RevisionID); err != nil {
				return err
			}
		}
		return read(head)
	})
	if err != nil {
		return err
	}
	if req.Publish {
		// What this call deployed, not a later change.
		v, err := g.PublishIf(ctx, f.Name, "", unchanged(f))
		if err != nil {
			return err
		}
		return c.reply(a.configuration(v, strconv.Itoa(v.Number)))
	}
	return c.reply(a.configuration(headVersion(f), ""))
}

type updateFunctionConfigurationRequest struct {
	Role          *string      `json:"Role"`
	Handler       *string      `json:"Handler"`
	Description   *string      `json:"Description"`
	Timeout       *int         `json:"Timeout"`
	MemorySize    *int         `json:"MemorySize"`
	Environment   *environment `json:"Environment"`
	Runtime       *string      `json:"Runtime"`
	RevisionID    string       `json:"RevisionId"`
	ImageConfig   *imageConfig `json:"ImageConfig"`
	Architectures []string     `json:"Architectures"`
	unsupported
}

// updateFunctionConfiguration changes the configuration of $LATEST; the
// members the request leaves out keep their values.
func (a *API) updateFunctionConfiguration(c *call) error {
	var req updateFunctionConfigurationRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := req.unsupported.check(); err != nil {
		return err
	}
	if err := a.checkArchitectures(req.Architectures); err != nil {
		return err
	}
	f, err := a.headOf(c, "UpdateFunctionConfiguration")
	if err != nil {
		return err
	}
	if err := checkRevision(headVersion(f), req.RevisionID); err != nil {
		return err
	}
	name := f.Name
	f, err = a.fns.Configure(c.r.Context(), name, func(cfg *stratus.FunctionConfig) error {
		// Configure calls this with no other change in between: the
		// RevisionId is checked on the head changed.
		head, ok := a.fns.Head(name)
		if !ok {
			return notFound("function %q was deleted meanwhile", name)
		}
		if err := checkRevision(head, req.RevisionID); err != nil {
			return err
		}
		image := cfg.Image != ""
		if req.Runtime != nil {
			if image {
				return invalidParameter("a function of PackageType Image takes no Runtime")
			}
			if err := setRuntime(cfg, *req.Runtime); err != nil {
				return err
			}
		}
		if req.Handler != nil {
			if image {
				return invalidParameter("a function of PackageType Image takes no Handler (set ImageConfig.Command)")
			}
			cfg.Handler = *req.Handler
		}
		if req.ImageConfig != nil {
			if !image {
				return invalidParameter("ImageConfig is for a function of PackageType Image")
			}
			if err := setImageConfig(cfg, req.ImageConfig); err != nil {
				return err
			}
		}
		if req.Role != nil {
			cfg.Role = *req.Role
		}
		if req.Description != nil {
			cfg.Description = *req.Description
		}
		// Zero would mean the default to the deploy's check.
		if req.Timeout != nil {
			if *req.Timeout < stratus.MinTimeoutSec {
				return invalidParameter("Timeout %d: must be between %d and %d seconds", *req.Timeout, stratus.MinTimeoutSec, stratus.MaxTimeoutSec)
			}
			cfg.TimeoutSec = *req.Timeout
		}
		if req.MemorySize != nil {
			if *req.MemorySize < stratus.MinMemoryMB {
				return invalidParameter("MemorySize %d: must be between %d and %d MB", *req.MemorySize, stratus.MinMemoryMB, stratus.MaxMemoryMB)
			}
			cfg.MemoryMB = *req.MemorySize
		}
		if req.Environment != nil {
			cfg.Env = req.Environment.Variables
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.reply(a.configuration(headVersion(f), ""))
}

type publishVersionRequest struct {
	CodeSha256  string `json:"CodeSha256"`
	Description string `json:"Description"`
	RevisionID  string `json:"RevisionId"`
}

// publishVersion publishes $LATEST as a numbered version; when nothing
// changed since the last one, it is that one.
func (a *API) publishVersion(c *call) error {
	var req publishVersionRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	f, err := a.headOf(c, "PublishVersion")
	if err != nil {
		return err
	}
	g, err := a.guarded()
	if err != nil {
		return err
	}
	// Checked on the head published, with no change in between.
	v, err := g.PublishIf(c.r.Context(), f.Name, req.Description, func(head *stratus.Version) error {
		if err := checkRevision(head, req.RevisionID); err != nil {
			return err
		}
		if req.CodeSha256 != "" && req.CodeSha256 != codeSha256(head.CodeSHA) {
			return &Error{Type: "PreconditionFailedException", Message: "CodeSha256 " + req.CodeSha256 + " is not that of $LATEST (" + codeSha256(head.CodeSHA) + ")"}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.reply(a.configuration(v, strconv.Itoa(v.Number)))
}
