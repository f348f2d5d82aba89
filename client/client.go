// Package client is the typed Go client of Stratus's native API. The CLI
// and the end-to-end tests use it.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// Client talks to one Stratus server.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client for the server at base (e.g. http://127.0.0.1:8080)
// using token.
func New(base, token string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), token: token, hc: &http.Client{}}
}

// APIError is an error answer of the server.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message + " (" + e.Code + ")" }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	return c.roundTrip(req, contentType)
}

// roundTrip sends req with the token and turns error answers into
// *APIError.
func (c *Client) roundTrip(req *http.Request, contentType string) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach stratus server at %s: %w", c.base, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var we v1.Error
		if json.Unmarshal(b, &we) != nil || we.Code == "" {
			we = v1.Error{Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(b))}
		}
		return nil, &APIError{Status: resp.StatusCode, Code: we.Code, Message: we.Message}
	}
	return resp, nil
}

// send sends req and decodes its JSON answer into out.
func (c *Client) send(req *http.Request, contentType string, out any) error {
	resp, err := c.roundTrip(req, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", req.URL.Path, err)
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}

// Deploy creates or updates function name with cfg and the zip read from
// code; code is nil for a function from an image (cfg.Image).
func (c *Client) Deploy(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*v1.Function, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			cw, err := mw.CreateFormField(v1.PartConfig)
			if err != nil {
				return err
			}
			if err := json.NewEncoder(cw).Encode(cfg); err != nil {
				return err
			}
			if code == nil { // a function from an image
				return mw.Close()
			}
			fw, err := mw.CreateFormFile(v1.PartCode, "code.zip")
			if err != nil {
				return err
			}
			if _, err := io.Copy(fw, code); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	resp, err := c.do(ctx, http.MethodPut, "/v1/functions/"+url.PathEscape(name), pr, mw.FormDataContentType())
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var f v1.Function
	if err := json.NewDecoder(resp.Body).Decode(&f); err != nil {
		return nil, fmt.Errorf("decode deploy answer: %w", err)
	}
	return &f, nil
}

// List returns every function.
func (c *Client) List(ctx context.Context) ([]v1.Function, error) {
	var l v1.FunctionList
	err := c.getJSON(ctx, "/v1/functions", &l)
	return l.Functions, err
}

// Get returns function name.
func (c *Client) Get(ctx context.Context, name string) (*v1.Function, error) {
	var f v1.Function
	if err := c.getJSON(ctx, "/v1/functions/"+url.PathEscape(name), &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Remove deletes function name.
func (c *Client) Remove(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(name), nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// InvokeResult is the answer of a synchronous invoke.
type InvokeResult struct {
	Body []byte
	// FunctionError is set ("Unhandled") when Body is Lambda's error object.
	FunctionError string
	RequestID     string
	// Version is what ran: $LATEST or a published version's number.
	Version        string
	Cold           bool
	DurationMs     float64
	InitDurationMs float64
}

// Invoke calls function name ("NAME", or "NAME:QUALIFIER" for a published
// version or an alias) with event and waits for its result.
func (c *Client) Invoke(ctx context.Context, name string, event []byte) (*InvokeResult, error) {
	resp, err := c.do(ctx, http.MethodPost, functionPath(name)+"/invoke", bytes.NewReader(event), "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read invoke answer: %w", err)
	}
	h := resp.Header
	r := &InvokeResult{
		Body: b, FunctionError: h.Get(v1.HeaderFunctionError), RequestID: h.Get(v1.HeaderRequestID),
		Version: h.Get(v1.HeaderVersion),
		Cold:    h.Get(v1.HeaderColdStart) == "true",
	}
	r.DurationMs, _ = strconv.ParseFloat(h.Get(v1.HeaderDuration), 64)
	r.InitDurationMs, _ = strconv.ParseFloat(h.Get(v1.HeaderInitDuration), 64)
	return r, nil
}

// InvokeAsync queues event for an asynchronous invocation of function
// name ("NAME" or "NAME:QUALIFIER") and returns its request ID once the event is durably stored.
func (c *Client) InvokeAsync(ctx context.Context, name string, event []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+functionPath(name)+"/invoke", bytes.NewReader(event))
	if err != nil {
		return "", err
	}
	req.Header.Set(v1.HeaderInvocationType, v1.InvocationEvent)
	var a v1.Accepted
	if err := c.send(req, "application/json", &a); err != nil {
		return "", err
	}
	return a.RequestID, nil
}

// Invocation returns the state of the asynchronous invocation id.
func (c *Client) Invocation(ctx context.Context, id string) (*stratus.AsyncStatus, error) {
	var st stratus.AsyncStatus
	if err := c.getJSON(ctx, "/v1/invocations/"+url.PathEscape(id), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// LogQuery selects log lines.
type LogQuery struct {
	Since     time.Duration // lines newer than this long ago; 0 for all
	RequestID string
	AfterID   int64
}

func (q LogQuery) values() url.Values {
	v := url.Values{}
	if q.Since > 0 {
		v.Set("since", q.Since.String())
	}
	if q.RequestID != "" {
		v.Set("request", q.RequestID)
	}
	if q.AfterID > 0 {
		v.Set("after", strconv.FormatInt(q.AfterID, 10))
	}
	return v
}

// Logs returns stored log lines of function name, oldest first.
func (c *Client) Logs(ctx context.Context, name string, q LogQuery) ([]stratus.LogLine, error) {
	return c.logs(ctx, "/v1/functions/"+url.PathEscape(name)+"/logs", q)
}

func (c *Client) logs(ctx context.Context, path string, q LogQuery) ([]stratus.LogLine, error) {
	var l v1.LogList
	err := c.getJSON(ctx, path+"?"+q.values().Encode(), &l)
	return l.Lines, err
}

// FollowLogs calls fn for each stored line and then for each new one, until
// ctx ends, fn returns an error, or the server stops.
func (c *Client) FollowLogs(ctx context.Context, name string, q LogQuery, fn func(stratus.LogLine) error) error {
	return c.followLogs(ctx, "/v1/functions/"+url.PathEscape(name)+"/logs", q, fn)
}

func (c *Client) followLogs(ctx context.Context, path string, q LogQuery, fn func(stratus.LogLine) error) error {
	v := q.values()
	v.Set("follow", "true")
	resp, err := c.do(ctx, http.MethodGet, path+"?"+v.Encode(), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l stratus.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decode log line: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// InvocationQuery selects invocation records.
type InvocationQuery struct {
	Since     time.Duration
	RequestID string
	Limit     int
}

// Invocations returns invocation records of function name, newest first,
// each with its usage as the server's meter computes it.
func (c *Client) Invocations(ctx context.Context, name string, q InvocationQuery) ([]v1.InvocationRecord, error) {
	v := url.Values{}
	if q.Since > 0 {
		v.Set("since", q.Since.String())
	}
	if q.RequestID != "" {
		v.Set("request", q.RequestID)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var l v1.InvocationList
	err := c.getJSON(ctx, "/v1/functions/"+url.PathEscape(name)+"/invocations?"+v.Encode(), &l)
	return l.Invocations, err
}
