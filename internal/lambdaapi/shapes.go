package lambdaapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// Lambda's JSON shapes, as the service model names their members.

// functionConfiguration is Lambda's FunctionConfiguration.
type functionConfiguration struct {
	FunctionName     string               `json:"FunctionName"`
	FunctionArn      string               `json:"FunctionArn"`
	Runtime          string               `json:"Runtime,omitempty"`
	Role             string               `json:"Role"`
	Handler          string               `json:"Handler,omitempty"`
	CodeSize         int64                `json:"CodeSize"`
	Description      string               `json:"Description"`
	Timeout          int                  `json:"Timeout"`
	MemorySize       int                  `json:"MemorySize"`
	LastModified     string               `json:"LastModified"`
	CodeSha256       string               `json:"CodeSha256"`
	Version          string               `json:"Version"`
	Environment      *environment         `json:"Environment,omitempty"`
	TracingConfig    tracingConfig        `json:"TracingConfig"`
	RevisionID       string               `json:"RevisionId"`
	State            string               `json:"State"`
	LastUpdateStatus string               `json:"LastUpdateStatus"`
	PackageType      string               `json:"PackageType"`
	Architectures    []string             `json:"Architectures"`
	EphemeralStorage ephemeralStorage     `json:"EphemeralStorage"`
	SnapStart        snapStart            `json:"SnapStart"`
	LoggingConfig    loggingConfig        `json:"LoggingConfig"`
	ImageConfig      *imageConfigResponse `json:"ImageConfigResponse,omitempty"`
}

// environment is Lambda's Environment (request) and EnvironmentResponse.
type environment struct {
	Variables map[string]string `json:"Variables"`
}

type tracingConfig struct {
	Mode string `json:"Mode"`
}

type ephemeralStorage struct {
	Size int `json:"Size"`
}

type snapStart struct {
	ApplyOn            string `json:"ApplyOn"`
	OptimizationStatus string `json:"OptimizationStatus,omitempty"`
}

type loggingConfig struct {
	LogFormat string `json:"LogFormat"`
	LogGroup  string `json:"LogGroup"`
}

// imageConfigResponse is Lambda's ImageConfigResponse.
type imageConfigResponse struct {
	ImageConfig imageConfigOut `json:"ImageConfig"`
}

// imageConfigOut is Lambda's ImageConfig as answered: only Command, the
// one member Stratus takes (CreateFunction keeps it as the handler).
type imageConfigOut struct {
	Command []string `json:"Command,omitempty"`
}

// Values of FunctionConfiguration's enums that Stratus answers.
const (
	stateActive       = "Active"
	updateSuccessful  = "Successful"
	packageZip        = "Zip"
	packageImage      = "Image"
	tracingPassThough = "PassThrough"
)

// configuration is the FunctionConfiguration of v, a function's head or
// one of its published versions, named in ARNs with qualifier q (empty:
// the unqualified ARN).
func (a *API) configuration(v *stratus.Version, q string) functionConfiguration {
	cfg := &v.Config
	out := functionConfiguration{
		FunctionName:     v.Function,
		FunctionArn:      a.arn(v.Function, q),
		Runtime:          lambdaRuntimeOf(cfg),
		Role:             cfg.Role,
		Handler:          cfg.Handler,
		CodeSize:         v.CodeSize,
		Description:      cfg.Description,
		Timeout:          cfg.TimeoutSec,
		MemorySize:       cfg.MemoryMB,
		LastModified:     lastModified(v.CreatedAt),
		CodeSha256:       codeSha256(v.CodeSHA),
		Version:          v.RunsAs(),
		TracingConfig:    tracingConfig{Mode: tracingPassThough},
		RevisionID:       revisionID(v),
		State:            stateActive,
		LastUpdateStatus: updateSuccessful,
		PackageType:      packageZip,
		Architectures:    []string{a.arch},
		EphemeralStorage: ephemeralStorage{Size: 512},
		SnapStart:        snapStart{ApplyOn: "None", OptimizationStatus: "Off"},
		LoggingConfig:    loggingConfig{LogFormat: "Text", LogGroup: "/aws/lambda/" + v.Function},
	}
	if v.Number > 0 && v.Description != "" {
		out.Description = v.Description
	}
	if cfg.Role == "" {
		out.Role = defaultRole(a.account)
	}
	if len(cfg.Env) > 0 {
		out.Environment = &environment{Variables: cfg.Env}
	}
	if cfg.Image != "" {
		out.PackageType = packageImage
		// An image's handler is its command, reported as ImageConfig's.
		out.Handler = ""
		out.ImageConfig = &imageConfigResponse{}
		if cfg.Handler != "" {
			out.ImageConfig.ImageConfig.Command = []string{cfg.Handler}
		}
	}
	return out
}

// defaultRole is the role a function made natively reports: Lambda's
// model requires one.
func defaultRole(account string) string {
	return "arn:aws:iam::" + account + ":role/stratus-function"
}

// lastModified writes t as Lambda writes LastModified:
// 2006-01-02T15:04:05.000+0000, in UTC.
func lastModified(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000-0700") }

// codeSha256 is a code digest as Lambda writes CodeSha256: the base64 of
// the raw SHA-256. A digest that is not hex SHA-256 (with or without a
// "sha256:" prefix) is written as it is.
func codeSha256(sha string) string {
	b, err := hex.DecodeString(strings.TrimPrefix(sha, "sha256:"))
	if err != nil || len(b) != sha256.Size {
		return sha
	}
	return base64.StdEncoding.EncodeToString(b)
}

// revisionID names the state of v's configuration and code: it changes
// with every deploy (a new snapshot) and is stable across restarts.
func revisionID(v *stratus.Version) string {
	h := sha256.Sum256([]byte(v.Function + "\x00" + strconv.Itoa(v.Version) + "\x00" + strconv.Itoa(v.Number) + "\x00" + v.CreatedAt.UTC().Format(time.RFC3339Nano)))
	return uuidOf(h[:16])
}

// uuidOf writes 16 bytes as a UUID (version 4 and variant bits set).
func uuidOf(b []byte) string {
	var u [16]byte
	copy(u[:], b)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// lambdaRuntimeOf is the runtime identifier a function reports: the one
// it was made with through this API, else Stratus's runtime name; none
// for a function from an image.
func lambdaRuntimeOf(cfg *stratus.FunctionConfig) string {
	if cfg.LambdaRuntime != "" {
		return cfg.LambdaRuntime
	}
	if cfg.Runtime == stratus.RuntimeImage {
		return ""
	}
	return cfg.Runtime
}

// headVersion is function f's head as a Version.
func headVersion(f *stratus.Function) *stratus.Version {
	return &stratus.Version{Function: f.Name, Version: f.Version, Config: f.Config, CodeSHA: f.CodeSHA, CodeSize: f.CodeSize, CreatedAt: f.UpdatedAt}
}
