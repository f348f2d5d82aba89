package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// functionPath is the path of function name, which may carry a qualifier
// ("NAME:1", "NAME:ALIAS"): its ':' is sent as %3A, as AWS's clients
// send it, so that no part of the path reads as a scheme.
func functionPath(name string) string {
	return "/v1/functions/" + escapeSegment(name)
}

// escapeSegment escapes s as one path segment, ':' included.
func escapeSegment(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
}

// sendJSON sends v as the JSON body of method path and decodes the
// answer into out; created reports a 201.
func (c *Client) sendJSON(ctx context.Context, method, path string, v, out any) (created bool, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", path, err)
	}
	resp, err := c.do(ctx, method, path, bytes.NewReader(b), "application/json")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return false, fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return resp.StatusCode == http.StatusCreated, nil
}

// PublishVersion makes a numbered version of function name's $LATEST, or
// returns the newest published version when $LATEST has not changed
// since (created is then false).
func (c *Client) PublishVersion(ctx context.Context, name, description string) (v *v1.Version, created bool, err error) {
	v = new(v1.Version)
	created, err = c.sendJSON(ctx, http.MethodPost, functionPath(name)+"/publish", v1.PublishSpec{Description: description}, v)
	if err != nil {
		return nil, false, err
	}
	return v, created, nil
}

// Versions returns function name's $LATEST, then its published versions,
// oldest first.
func (c *Client) Versions(ctx context.Context, name string) ([]v1.Version, error) {
	var l v1.VersionList
	err := c.getJSON(ctx, functionPath(name)+"/versions", &l)
	return l.Versions, err
}

// DeleteVersion deletes published version n of function name.
func (c *Client) DeleteVersion(ctx context.Context, name string, n int) error {
	resp, err := c.do(ctx, http.MethodDelete, functionPath(name)+"/versions/"+strconv.Itoa(n), nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// SetAlias creates alias of function name, or replaces it, as spec says;
// created reports a new alias.
func (c *Client) SetAlias(ctx context.Context, name, alias string, spec v1.AliasSpec) (a *stratus.Alias, created bool, err error) {
	a = new(stratus.Alias)
	created, err = c.sendJSON(ctx, http.MethodPut, functionPath(name)+"/aliases/"+escapeSegment(alias), spec, a)
	if err != nil {
		return nil, false, err
	}
	return a, created, nil
}

// Aliases returns the aliases of function name, ordered by name.
func (c *Client) Aliases(ctx context.Context, name string) ([]stratus.Alias, error) {
	var l v1.AliasList
	err := c.getJSON(ctx, functionPath(name)+"/aliases", &l)
	return l.Aliases, err
}

// Alias returns alias of function name.
func (c *Client) Alias(ctx context.Context, name, alias string) (*stratus.Alias, error) {
	var a stratus.Alias
	if err := c.getJSON(ctx, functionPath(name)+"/aliases/"+escapeSegment(alias), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// RemoveAlias deletes alias of function name.
func (c *Client) RemoveAlias(ctx context.Context, name, alias string) error {
	resp, err := c.do(ctx, http.MethodDelete, functionPath(name)+"/aliases/"+escapeSegment(alias), nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
