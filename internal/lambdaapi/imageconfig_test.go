package lambdaapi

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// GetFunction answers the ImageConfig.Command CreateFunction set (and no
// Handler: an image's handler is its command), so that a tool comparing
// what it sent with what it reads sees no change; without a Command the
// ImageConfig is empty.
func TestImageConfigRoundTrip(t *testing.T) {
	ta := newTestAPI(t)
	for name, ic := range map[string]any{"cmd": map[string]any{"Command": []string{"app.handler"}}, "bare": nil} {
		req := map[string]any{"FunctionName": name, "PackageType": "Image", "Role": "r", "Code": map[string]any{"ImageUri": "registry.local/fn:1"}}
		if ic != nil {
			req["ImageConfig"] = ic
		}
		decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions", req), http.StatusCreated, nil)
	}
	for name, want := range map[string]string{
		"cmd":  `{"ImageConfig":{"Command":["app.handler"]}}`,
		"bare": `{"ImageConfig":{}}`,
	} {
		var got struct {
			Configuration map[string]json.RawMessage
		}
		decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/"+name, nil), http.StatusOK, &got)
		if diff := cmp.Diff(want, string(got.Configuration["ImageConfigResponse"])); diff != "" {
			t.Errorf("%s: ImageConfigResponse (-want +got):\n%s", name, diff)
		}
		if h, ok := got.Configuration["Handler"]; ok {
			t.Errorf("%s: Handler %s answered for an image function", name, h)
		}
	}
	// UpdateFunctionConfiguration changes it; GetFunctionConfiguration
	// answers the same shape.
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/cmd/configuration", map[string]any{"ImageConfig": map[string]any{"Command": []string{"other.handler"}}}), http.StatusOK, nil)
	var cfg functionConfiguration
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/cmd/configuration", nil), http.StatusOK, &cfg)
	if cfg.ImageConfig == nil || !cmp.Equal(cfg.ImageConfig.ImageConfig.Command, []string{"other.handler"}) {
		t.Errorf("after UpdateFunctionConfiguration: %+v", cfg.ImageConfig)
	}
}
