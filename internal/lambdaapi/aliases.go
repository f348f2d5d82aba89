package lambdaapi

import (
	"slices"
	"strings"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("CreateAlias", (*API).createAlias)
	handle("GetAlias", (*API).getAlias)
	handle("UpdateAlias", (*API).updateAlias)
	handle("DeleteAlias", (*API).deleteAlias)
	handle("ListAliases", (*API).listAliases)
}

// routingConfig is Lambda's AliasRoutingConfiguration.
type routingConfig struct {
	AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights"`
}

// aliasConfiguration is Lambda's AliasConfiguration.
type aliasConfiguration struct {
	AliasArn        string         `json:"AliasArn"`
	Name            string         `json:"Name"`
	FunctionVersion string         `json:"FunctionVersion"`
	Description     string         `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig,omitempty"`
	RevisionID      string         `json:"RevisionId"`
}

func (a *API) aliasOut(al *stratus.Alias) aliasConfiguration {
	out := aliasConfiguration{
		AliasArn: a.arn(al.Function, al.Name), Name: al.Name, FunctionVersion: al.Version,
		Description: al.Description, RevisionID: al.RevisionID,
	}
	if len(al.Weights) > 0 {
		out.RoutingConfig = &routingConfig{AdditionalVersionWeights: al.Weights}
	}
	return out
}

// aliasFunction is the function an alias operation names, without a
// qualifier.
func (c *call) aliasFunction() (string, error) {
	ref, err := functionRef(c.param("FunctionName"), "")
	if err != nil {
		return "", err
	}
	if ref.Qualifier != "" {
		return "", invalidParameter("FunctionName %q: name the function without a qualifier", c.param("FunctionName"))
	}
	return ref.Name, nil
}

// aliasName is the Name path parameter, checked.
// alias is the function and alias name the request's path names.
func (c *call) alias() (fn, name string, err error) {
	if fn, err = c.aliasFunction(); err != nil {
		return "", "", err
	}
	if name, err = c.aliasName(); err != nil {
		return "", "", err
	}
	return fn, name, nil
}

func (c *call) aliasName() (string, error) {
	name := c.param("Name")
	if err := stratus.ValidAliasName(name); err != nil {
		return "", invalidParameter("%s", err.Error())
	}
	return name, nil
}

type createAliasRequest struct {
	Name            string         `json:"Name"`
	FunctionVersion string         `json:"FunctionVersion"`
	Description     string         `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig"`
}

func (a *API) createAlias(c *call) error {
	fn, err := c.aliasFunction()
	if err != nil {
		return err
	}
	var req createAliasRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Name == "" || req.FunctionVersion == "" {
		return invalidParameter("Name and FunctionVersion are required")
	}
	al := stratus.Alias{Function: fn, Name: req.Name, Version: req.FunctionVersion, Description: req.Description}
	if req.RoutingConfig != nil {
		al.Weights = req.RoutingConfig.AdditionalVersionWeights
	}
	if err := al.Validate(); err != nil {
		return err
	}
	out, err := a.fns.PutAlias(c.r.Context(), al, true, "")
	if err != nil {
		return err
	}
	return c.reply(a.aliasOut(out))
}

func (a *API) getAlias(c *call) error {
	fn, name, err := c.alias()
	if err != nil {
		return err
	}
	al, err := a.fns.Alias(c.r.Context(), fn, name)
	if err != nil {
		return err
	}
	return c.reply(a.aliasOut(al))
}

type updateAliasRequest struct {
	FunctionVersion *string        `json:"FunctionVersion"`
	Description     *string        `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig"`
	RevisionID      string         `json:"RevisionId"`
}

// updateAlias changes what the request names and keeps the rest; a
// RoutingConfig replaces the weights (an empty one removes them).
func (a *API) updateAlias(c *call) error {
	fn, name, err := c.alias()
	if err != nil {
		return err
	}
	var req updateAliasRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	ctx := c.r.Context()
	al, err := a.fns.Alias(ctx, fn, name)
	if err != nil {
		return err
	}
	if req.RevisionID != "" && req.RevisionID != al.RevisionID {
		return &Error{Type: "PreconditionFailedException", Message: "RevisionId " + req.RevisionID + " is not the alias's current one (" + al.RevisionID + "): read it again and retry"}
	}
	next := *al
	if req.FunctionVersion != nil {
		next.Version = *req.FunctionVersion
	}
	if req.Description != nil {
		next.Description = *req.Description
	}
	if req.RoutingConfig != nil {
		next.Weights = req.RoutingConfig.AdditionalVersionWeights
	}
	if err := next.Validate(); err != nil {
		return err
	}
	out, err := a.fns.PutAlias(ctx, next, false, al.RevisionID)
	if err != nil {
		return err
	}
	return c.reply(a.aliasOut(out))
}

func (a *API) deleteAlias(c *call) error {
	fn, name, err := c.alias()
	if err != nil {
		return err
	}
	if err := a.fns.DeleteAlias(c.r.Context(), fn, name); err != nil {
		return err
	}
	return c.noContent()
}

type listAliasesResponse struct {
	Aliases    []aliasConfiguration `json:"Aliases"`
	NextMarker string               `json:"NextMarker,omitempty"`
}

// listAliases lists a function's aliases by name, those that point at
// FunctionVersion (or route to it) when it is given; the marker is the
// name the next page starts at.
func (a *API) listAliases(c *call) error {
	fn, err := c.aliasFunction()
	if err != nil {
		return err
	}
	limit, err := c.maxItems()
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	if _, err := a.fns.Get(ctx, fn); err != nil {
		return err
	}
	als, err := a.fns.Aliases(ctx, fn)
	if err != nil {
		return err
	}
	slices.SortFunc(als, func(x, y stratus.Alias) int { return strings.Compare(x.Name, y.Name) })
	version, marker := c.query("FunctionVersion"), c.query("Marker")
	out := listAliasesResponse{Aliases: []aliasConfiguration{}}
	for i := range als {
		al := &als[i]
		if al.Name < marker {
			continue
		}
		if _, routed := al.Weights[version]; version != "" && al.Version != version && !routed {
			continue
		}
		if len(out.Aliases) == limit {
			out.NextMarker = al.Name
			break
		}
		out.Aliases = append(out.Aliases, a.aliasOut(al))
	}
	return c.reply(out)
}
