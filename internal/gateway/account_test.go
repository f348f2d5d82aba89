package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stratus-run/stratus"
)

// capture is scripted's function "f" that keeps the last event it got.
type capture struct {
	scripted
	event []byte
}

func (c *capture) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	c.event = req.Event
	return c.scripted.Invoke(ctx, name, req)
}

// TestFunctionRouteAccount: the function route's events name the
// server's account (Config.AccountID), else Lambda's placeholder.
func TestFunctionRouteAccount(t *testing.T) {
	for _, tc := range []struct{ account, want string }{
		{"123456789012", "123456789012"},
		{"", stratus.DefaultAccountID},
	} {
		inv := &capture{scripted: scripted{resp: &stratus.Response{Body: []byte(`{"statusCode":200}`)}}}
		g := New(Config{Invoker: inv, Queue: noQueue{}, Heads: inv, AccountID: tc.account})
		mux := http.NewServeMux()
		mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/fn/f/x", nil))
		if rec.Code != 200 {
			t.Fatalf("GET /fn/f/x: %d %s", rec.Code, rec.Body)
		}
		var ev struct {
			RequestContext struct {
				AccountID string `json:"accountId"`
			} `json:"requestContext"`
		}
		if err := json.Unmarshal(inv.event, &ev); err != nil {
			t.Fatalf("event %s: %v", inv.event, err)
		}
		if ev.RequestContext.AccountID != tc.want {
			t.Errorf("account %q: the event says %q, want %q", tc.account, ev.RequestContext.AccountID, tc.want)
		}
	}
}
