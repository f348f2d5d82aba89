package lambdaapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/functions"
)

func init() {
	handle("TagResource", (*API).tagResource)
	handle("UntagResource", (*API).untagResource)
	handle("ListTags", (*API).listTags)
}

// Tags belong to a function (not to its versions or aliases), as on
// Lambda: at most 50, keys of 1 to 128 characters not starting with
// "aws:", values of at most 256. A resource is named by its function's
// ARN; Stratus has no other taggable resource.

// untagger removes a function's tags (*functions.Service).
type untagger interface {
	UntagFunction(ctx context.Context, name string, keys []string) error
}

// checkTags checks tags as TagResource and CreateFunction take them, so
// that a request with bad tags is refused before it changes anything.
func checkTags(tags map[string]string) error {
	if err := functions.ValidTags(tags); err != nil {
		return invalidParameter("Tags: %s", strings.TrimSuffix(err.Error(), ": "+stratus.ErrInvalid.Error()))
	}
	return nil
}

// taggedFunction is the function the Resource path parameter names: a
// function's ARN, without a qualifier.
func (c *call) taggedFunction() (string, error) {
	arn := c.param("Resource")
	parts := strings.SplitN(arn, ":", 7)
	if len(parts) < 7 || parts[0] != "arn" || parts[2] != "lambda" {
		return "", invalidParameter("Resource %q: not a Lambda ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)", arn)
	}
	if parts[5] != "function" {
		return "", invalidParameter("Resource %q: only functions have tags in Stratus (%s is not supported by Stratus)", arn, parts[5])
	}
	ref, err := stratus.ParseFunctionRef(arn)
	if err != nil {
		return "", invalidParameter("Resource: %s", err.Error())
	}
	if ref.Qualifier != "" {
		return "", invalidParameter("Resource %q: tags belong to the function, not to a version or alias: name it without the qualifier", arn)
	}
	return ref.Name, nil
}

type tagResourceRequest struct {
	Tags map[string]string `json:"Tags"`
}

func (a *API) tagResource(c *call) error {
	t, ok := a.fns.(tagger)
	if !ok {
		return noTags()
	}
	name, err := c.taggedFunction()
	if err != nil {
		return err
	}
	var req tagResourceRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.Tags) == 0 {
		return invalidParameter("Tags is required: at least one tag")
	}
	if err := checkTags(req.Tags); err != nil {
		return err
	}
	if err := t.TagFunction(c.r.Context(), name, req.Tags); err != nil {
		return a.tagError(name, err)
	}
	return c.noContent()
}

func (a *API) untagResource(c *call) error {
	t, ok := a.fns.(untagger)
	if !ok {
		return noTags()
	}
	name, err := c.taggedFunction()
	if err != nil {
		return err
	}
	keys := c.r.URL.Query()["tagKeys"]
	if len(keys) == 0 {
		return invalidParameter("TagKeys is required: name the tags to remove (tagKeys=KEY)")
	}
	if err := t.UntagFunction(c.r.Context(), name, keys); err != nil {
		return a.tagError(name, err)
	}
	return c.noContent()
}

type listTagsResponse struct {
	Tags map[string]string `json:"Tags"`
}

func (a *API) listTags(c *call) error {
	t, ok := a.fns.(tagLister)
	if !ok {
		return noTags()
	}
	name, err := c.taggedFunction()
	if err != nil {
		return err
	}
	tags, err := t.FunctionTags(c.r.Context(), name)
	if err != nil {
		return a.tagError(name, err)
	}
	if tags == nil {
		tags = map[string]string{}
	}
	return c.reply(listTagsResponse{Tags: tags})
}

// tagError words a missing function as Lambda does.
func (a *API) tagError(name string, err error) error {
	if errors.Is(err, stratus.ErrNotFound) {
		return notFound("Function not found: %s", a.arn(name, ""))
	}
	return err
}

func noTags() error {
	return &Error{Type: "ServiceException", Status: http.StatusNotImplemented, Message: "this server keeps no tags"}
}
