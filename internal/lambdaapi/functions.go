package lambdaapi

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("CreateFunction", (*API).createFunction)
	handle("GetFunction", (*API).getFunction)
	handle("GetFunctionConfiguration", (*API).getFunctionConfiguration)
	handle("ListFunctions", (*API).listFunctions)
	handle("ListVersionsByFunction", (*API).listVersionsByFunction)
	handle("DeleteFunction", (*API).deleteFunction)
}

// functionCode is Lambda's FunctionCode.
type functionCode struct {
	ZipFile         []byte `json:"ZipFile"`
	S3Bucket        string `json:"S3Bucket"`
	S3Key           string `json:"S3Key"`
	S3ObjectVersion string `json:"S3ObjectVersion"`
	ImageURI        string `json:"ImageUri"`
}

// imageConfig is Lambda's ImageConfig.
type imageConfig struct {
	EntryPoint       []string `json:"EntryPoint"`
	Command          []string `json:"Command"`
	WorkingDirectory string   `json:"WorkingDirectory"`
}

// unsupported are request members Stratus refuses when they ask for
// something: it does not run layers, VPCs, file systems, dead-letter
// targets or code signing.
type unsupported struct {
	Layers            []string `json:"Layers"`
	FileSystemConfigs []any    `json:"FileSystemConfigs"`
	VpcConfig         *struct {
		SubnetIDs        []string `json:"SubnetIds"`
		SecurityGroupIDs []string `json:"SecurityGroupIds"`
	} `json:"VpcConfig"`
	DeadLetterConfig *struct {
		TargetArn string `json:"TargetArn"`
	} `json:"DeadLetterConfig"`
	CodeSigningConfigArn string `json:"CodeSigningConfigArn"`
}

func (u *unsupported) check() error {
	switch {
	case len(u.Layers) > 0:
		return invalidParameter("Layers: layers are not supported by Stratus; put what they hold in the function's code")
	case len(u.FileSystemConfigs) > 0:
		return invalidParameter("FileSystemConfigs: file systems are not supported by Stratus")
	case u.VpcConfig != nil && (len(u.VpcConfig.SubnetIDs) > 0 || len(u.VpcConfig.SecurityGroupIDs) > 0):
		return invalidParameter("VpcConfig: VPCs are not supported by Stratus")
	case u.DeadLetterConfig != nil && u.DeadLetterConfig.TargetArn != "":
		return invalidParameter("DeadLetterConfig: not supported by Stratus; use PutFunctionEventInvokeConfig's DestinationConfig.OnFailure")
	case u.CodeSigningConfigArn != "":
		return invalidParameter("CodeSigningConfigArn: code signing is not supported by Stratus")
	}
	return nil
}

// checkArchitectures refuses an architecture other than the machine's.
func (a *API) checkArchitectures(archs []string) error {
	for _, arch := range archs {
		if arch != a.arch {
			return invalidParameter("Architectures: this server runs functions on %s, not %s", a.arch, arch)
		}
	}
	if len(archs) > 1 {
		return invalidParameter("Architectures: name one architecture")
	}
	return nil
}

// setImageConfig maps ImageConfig onto cfg: Command, which replaces the
// image's CMD, is the handler.
func setImageConfig(cfg *stratus.FunctionConfig, ic *imageConfig) error {
	if ic == nil {
		return nil
	}
	if len(ic.EntryPoint) > 0 || ic.WorkingDirectory != "" {
		return invalidParameter("ImageConfig: only Command is supported by Stratus, not EntryPoint or WorkingDirectory")
	}
	switch len(ic.Command) {
	case 0:
		cfg.Handler = ""
	case 1:
		cfg.Handler = ic.Command[0]
	default:
		return invalidParameter("ImageConfig.Command: Stratus takes one element, the handler")
	}
	return nil
}

type createFunctionRequest struct {
	FunctionName  string            `json:"FunctionName"`
	Runtime       string            `json:"Runtime"`
	Role          string            `json:"Role"`
	Handler       string            `json:"Handler"`
	Code          *functionCode     `json:"Code"`
	Description   string            `json:"Description"`
	Timeout       int               `json:"Timeout"`
	MemorySize    int               `json:"MemorySize"`
	Publish       bool              `json:"Publish"`
	PackageType   string            `json:"PackageType"`
	Environment   *environment      `json:"Environment"`
	Tags          map[string]string `json:"Tags"`
	Architectures []string          `json:"Architectures"`
	ImageConfig   *imageConfig      `json:"ImageConfig"`
	unsupported
}

// tagger stores a function's tags (*functions.Service, when it can).
type tagger interface {
	TagFunction(ctx context.Context, name string, tags map[string]string) error
}

// tagLister reads a function's tags.
type tagLister interface {
	FunctionTags(ctx context.Context, name string) (map[string]string, error)
}

func (a *API) createFunction(c *call) error {
	var req createFunctionRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	ref, err := functionRef(req.FunctionName, "")
	if err != nil {
		return err
	}
	if ref.Qualifier != "" {
		return invalidParameter("FunctionName %q: a new function takes no qualifier", req.FunctionName)
	}
	if req.Role == "" {
		return invalidParameter("Role is required (Stratus keeps it but does not use it)")
	}
	if req.Code == nil {
		return invalidParameter("Code is required: Code.ZipFile (base64) or, with PackageType Image, Code.ImageUri")
	}
	if err := req.unsupported.check(); err != nil {
		return err
	}
	if err := a.checkArchitectures(req.Architectures); err != nil {
		return err
	}
	if req.Code.S3Bucket != "" || req.Code.S3Key != "" {
		return invalidParameter("Code.S3Bucket: code from S3 is not supported by Stratus; send Code.ZipFile")
	}
	cfg := stratus.FunctionConfig{
		Handler: req.Handler, Role: req.Role, Description: req.Description,
		TimeoutSec: req.Timeout, MemoryMB: req.MemorySize,
	}
	if req.Environment != nil {
		cfg.Env = req.Environment.Variables
	}
	var code *bytes.Reader
	switch req.PackageType {
	case "", packageZip:
		if req.Code.ImageURI != "" || len(req.Code.ZipFile) == 0 {
			return invalidParameter("Code.ZipFile is required for a function of PackageType Zip")
		}
		if req.ImageConfig != nil {
			return invalidParameter("ImageConfig is for a function of PackageType Image")
		}
		if err := setRuntime(&cfg, req.Runtime); err != nil {
			return err
		}
		code = bytes.NewReader(req.Code.ZipFile)
	case packageImage:
		if req.Code.ImageURI == "" || len(req.Code.ZipFile) > 0 {
			return invalidParameter("Code.ImageUri is required for a function of PackageType Image (an image in the server's store: stratus image import|pull)")
		}
		if req.Runtime != "" || req.Handler != "" {
			return invalidParameter("a function of PackageType Image takes no Runtime nor Handler (set ImageConfig.Command)")
		}
		cfg.Runtime, cfg.Image = stratus.RuntimeImage, req.Code.ImageURI
		if err := setImageConfig(&cfg, req.ImageConfig); err != nil {
			return err
		}
	default:
		return invalidParameter("PackageType %q: want Zip or Image", req.PackageType)
	}
	var tags tagger
	if len(req.Tags) > 0 {
		t, ok := a.fns.(tagger)
		if !ok {
			return &Error{Type: "ServiceException", Status: 501, Message: "Tags: this server keeps no tags"}
		}
		if err := checkTags(req.Tags); err != nil {
			return err
		}
		tags = t
	}
	if _, ok := a.fns.Head(ref.Name); ok {
		return conflict("function %q exists already", ref.Name)
	}
	g, err := a.guarded()
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	var f *stratus.Function
	// Only creates: a function made meanwhile (another CreateFunction, a
	// native deploy) is a conflict, not replaced.
	if code != nil {
		f, err = g.DeployNew(ctx, ref.Name, cfg, code)
	} else {
		f, err = g.DeployNew(ctx, ref.Name, cfg, nil)
	}
	if err != nil {
		return err
	}
	if tags != nil {
		if err := tags.TagFunction(ctx, ref.Name, req.Tags); err != nil {
			return fmt.Errorf("tag function %q: %w", ref.Name, err)
		}
	}
	if req.Publish {
		v, err := g.PublishIf(ctx, ref.Name, "", unchanged(f))
		if err != nil {
			return err
		}
		return c.reply(a.configuration(v, strconv.Itoa(v.Number)))
	}
	return c.reply(a.configuration(headVersion(f), ""))
}

// resolve is the version ref names (from memory): the head for no
// qualifier or $LATEST, a published version, or the version an alias
// points at.
func (a *API) resolve(ref stratus.FunctionRef) (*stratus.Version, error) {
	v, ok := a.fns.HeadOf(ref)
	if !ok {
		if _, ok := a.fns.Head(ref.Name); !ok {
			return nil, notFound("function not found: %s", a.arn(ref.Name, ""))
		}
		return nil, notFound("function %s has no version or alias %s", ref.Name, ref.Qualifier)
	}
	return v, nil
}

// functionCodeLocation is Lambda's FunctionCodeLocation.
type functionCodeLocation struct {
	RepositoryType   string `json:"RepositoryType"`
	Location         string `json:"Location,omitempty"`
	ImageURI         string `json:"ImageUri,omitempty"`
	ResolvedImageURI string `json:"ResolvedImageUri,omitempty"`
}

type getFunctionResponse struct {
	Configuration functionConfiguration `json:"Configuration"`
	Code          functionCodeLocation  `json:"Code"`
	Tags          map[string]string     `json:"Tags,omitempty"`
}

func (a *API) getFunction(c *call) error {
	ref, err := c.function()
	if err != nil {
		return err
	}
	v, err := a.resolve(ref)
	if err != nil {
		return err
	}
	out := getFunctionResponse{Configuration: a.configuration(v, ref.Qualifier), Code: functionCodeLocation{RepositoryType: "S3"}}
	if img := v.Config.Image; img != "" {
		out.Code = functionCodeLocation{RepositoryType: "ECR", ImageURI: img, ResolvedImageURI: resolvedImage(img, v.CodeSHA)}
	}
	if t, ok := a.fns.(tagLister); ok {
		tags, err := t.FunctionTags(c.r.Context(), ref.Name)
		if err != nil {
			return err
		}
		if len(tags) > 0 {
			out.Tags = tags
		}
	}
	return c.reply(out)
}

// resolvedImage is image ref img pinned to its digest.
func resolvedImage(img, digest string) string {
	if !strings.HasPrefix(digest, "sha256:") {
		return ""
	}
	if i := strings.LastIndex(img, "@"); i >= 0 {
		img = img[:i]
	} else if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		img = img[:i]
	}
	return img + "@" + digest
}

func (a *API) getFunctionConfiguration(c *call) error {
	ref, err := c.function()
	if err != nil {
		return err
	}
	v, err := a.resolve(ref)
	if err != nil {
		return err
	}
	return c.reply(a.configuration(v, ref.Qualifier))
}

// Paging of lists, as on Lambda.
const (
	defaultMaxItems = 50
	maxMaxItems     = 10000
)

// maxItems reads the MaxItems query parameter.
func (c *call) maxItems() (int, error) {
	s := c.query("MaxItems")
	if s == "" {
		return defaultMaxItems, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxMaxItems {
		return 0, invalidParameter("MaxItems %q: want 1 to %d", s, maxMaxItems)
	}
	return n, nil
}

type listFunctionsResponse struct {
	Functions  []functionConfiguration `json:"Functions"`
	NextMarker string                  `json:"NextMarker,omitempty"`
}

// listFunctions lists functions by name; the marker is the name the next
// page starts at. With FunctionVersion ALL each function's published
// versions follow its $LATEST, which then has the qualified ARN; the
// marker is then "NAME:VERSION".
func (a *API) listFunctions(c *call) error {
	limit, err := c.maxItems()
	if err != nil {
		return err
	}
	all := false
	switch fv := c.query("FunctionVersion"); fv {
	case "":
	case "ALL":
		all = true
	default:
		return invalidParameter("FunctionVersion %q: want ALL", fv)
	}
	ctx := c.r.Context()
	fns, err := a.fns.List(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(fns, func(x, y stratus.Function) int { return strings.Compare(x.Name, y.Name) })
	marker := c.query("Marker")
	markName, markVersion, _ := strings.Cut(marker, ":")
	out := listFunctionsResponse{Functions: []functionConfiguration{}}
	for i := range fns {
		f := &fns[i]
		if f.Name < markName {
			continue
		}
		head := headVersion(f)
		if !all {
			if len(out.Functions) == limit {
				out.NextMarker = f.Name
				break
			}
			out.Functions = append(out.Functions, a.configuration(head, ""))
			continue
		}
		vs := []*stratus.Version{head}
		if f.Published > 0 {
			pub, err := a.fns.PublishedVersions(ctx, f.Name)
			if err != nil {
				return err
			}
			for j := range pub {
				vs = append(vs, &pub[j])
			}
		}
		for _, v := range vs {
			if f.Name == markName && versionOrder(v.RunsAs()) < versionOrder(markVersion) {
				continue
			}
			if len(out.Functions) == limit {
				out.NextMarker = f.Name + ":" + v.RunsAs()
				return c.reply(out)
			}
			out.Functions = append(out.Functions, a.configuration(v, v.RunsAs()))
		}
	}
	return c.reply(out)
}

// versionOrder orders version names: $LATEST (and an empty marker)
// first, then published versions by number.
func versionOrder(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0
	}
	return n
}

type listVersionsResponse struct {
	Versions   []functionConfiguration `json:"Versions"`
	NextMarker string                  `json:"NextMarker,omitempty"`
}

// listVersionsByFunction lists $LATEST, then the published versions by
// number; the marker is the version the next page starts at.
func (a *API) listVersionsByFunction(c *call) error {
	ref, err := c.function()
	if err != nil {
		return err
	}
	if ref.Qualifier != "" {
		return invalidParameter("ListVersionsByFunction names a function without a qualifier")
	}
	limit, err := c.maxItems()
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	f, err := a.fns.Get(ctx, ref.Name)
	if err != nil {
		return err
	}
	pub, err := a.fns.PublishedVersions(ctx, ref.Name)
	if err != nil {
		return err
	}
	slices.SortFunc(pub, func(x, y stratus.Version) int { return x.Number - y.Number })
	vs := make([]*stratus.Version, 0, len(pub)+1)
	vs = append(vs, headVersion(f))
	for i := range pub {
		vs = append(vs, &pub[i])
	}
	from := versionOrder(c.query("Marker"))
	out := listVersionsResponse{Versions: []functionConfiguration{}}
	for _, v := range vs {
		if versionOrder(v.RunsAs()) < from {
			continue
		}
		if len(out.Versions) == limit {
			out.NextMarker = v.RunsAs()
			break
		}
		out.Versions = append(out.Versions, a.configuration(v, v.RunsAs()))
	}
	return c.reply(out)
}

// deleteFunction removes a function, or with a version number as its
// qualifier that published version. $LATEST and aliases are not deleted
// this way (DeleteAlias removes an alias).
func (a *API) deleteFunction(c *call) error {
	ref, err := c.function()
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	switch {
	case ref.Qualifier == "":
		if err := a.fns.Remove(ctx, ref.Name); err != nil {
			return err
		}
	case ref.Qualifier == stratus.LatestVersion:
		return invalidParameter("$LATEST is deleted with the function: call DeleteFunction without a qualifier")
	default:
		n, ok := ref.Version()
		if !ok {
			return invalidParameter("qualifier %q: DeleteFunction deletes a published version by its number; DeleteAlias deletes an alias", ref.Qualifier)
		}
		if err := a.fns.DeleteVersion(ctx, ref.Name, n); err != nil {
			return err
		}
	}
	// Lambda answers a deletion done with 204 (the model's output
	// carries the status, which may also be 202).
	c.w.WriteHeader(204)
	return nil
}
