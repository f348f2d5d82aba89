package sigv4

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// botocoreSign is a Python program that signs a request with botocore's
// SigV4Auth (the signer of boto3 and the AWS CLI) and prints its headers
// as JSON. Arguments: method, URL, body, access key ID, secret, region.
const botocoreSign = `
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
method, url, body, key, secret, region = sys.argv[1:7]
req = AWSRequest(method=method, url=url, data=body.encode(), headers={"Content-Type": "application/json"})
SigV4Auth(Credentials(key, secret), "lambda", region).add_auth(req)
print(json.dumps(dict(req.headers.items())))
`

// TestBotocore checks a request signed by botocore: admitted as signed,
// refused with another body.
func TestBotocore(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(python, "-c", "import botocore.auth").Run()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 with botocore is needed: %v", err)
		}
		t.Skipf("python3 with botocore is needed: %v", err)
	}
	srv := server(t, New(Config{Keys: newKeys()}))
	path := "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A000000000000%3Afunction%3Ahello%3Alive/invocations"
	url := srv.URL + path + "?Qualifier=%24LATEST&Marker=a%2Fb%20c"
	body := `{"hello": "wörld"}`
	out, err := exec.Command(python, "-c", botocoreSign, "POST", url, body, testKeyID, testSecret, "eu-west-1").Output()
	if err != nil {
		t.Fatalf("botocore: %v", err)
	}
	var headers map[string]string
	if err := json.Unmarshal(out, &headers); err != nil {
		t.Fatalf("botocore's output %s: %v", out, err)
	}
	send := func(body string) (int, string) {
		req, err := http.NewRequest("POST", url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType") + " " + string(b)
	}
	if code, msg := send(body); code != 200 {
		t.Fatalf("signed by botocore: %d %s", code, msg)
	}
	if code, msg := send(`{"hello": "world"}`); code != 403 || !strings.HasPrefix(msg, CodeInvalidSignature) {
		t.Fatalf("signed by botocore over another body: %d %s", code, msg)
	}
}
