package lambdaapi

import (
	"bytes"
	"io"
	"strconv"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("UpdateFunctionCode", (*API).updateFunctionCode)
	handle("UpdateFunctionConfiguration", (*API).updateFunctionConfiguration)
	handle("PublishVersion", (*API).publishVersion)
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
	ctx := c.r.Context()
	f, _, err = a.fns.Deploy(ctx, f.Name, cfg, code)
	if err != nil {
		return err
	}
	if req.Publish {
		v, err := a.fns.Publish(ctx, f.Name, "")
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
	f, err = a.fns.Configure(c.r.Context(), f.Name, func(cfg *stratus.FunctionConfig) error {
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
	head := headVersion(f)
	if err := checkRevision(head, req.RevisionID); err != nil {
		return err
	}
	if req.CodeSha256 != "" && req.CodeSha256 != codeSha256(f.CodeSHA) {
		return &Error{Type: "PreconditionFailedException", Message: "CodeSha256 " + req.CodeSha256 + " is not that of $LATEST (" + codeSha256(f.CodeSHA) + ")"}
	}
	v, err := a.fns.Publish(c.r.Context(), f.Name, req.Description)
	if err != nil {
		return err
	}
	return c.reply(a.configuration(v, strconv.Itoa(v.Number)))
}
