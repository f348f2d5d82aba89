// Command goapigw is a test function written with aws-lambda-go's API
// Gateway v2 types: it echoes the request and answers with the status,
// headers and cookies the query asks for.
package main

import (
	"encoding/base64"
	"encoding/json"
	"strconv"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	body := req.Body
	if req.IsBase64Encoded {
		b, _ := base64.StdEncoding.DecodeString(body)
		body = string(b)
	}
	echo, _ := json.Marshal(map[string]any{
		"method": req.RequestContext.HTTP.Method, "rawPath": req.RawPath, "rawQuery": req.RawQueryString,
		"query": req.QueryStringParameters, "cookies": req.Cookies, "body": body,
		"base64": req.IsBase64Encoded, "headers": req.Headers, "sourceIp": req.RequestContext.HTTP.SourceIP,
		"requestId": req.RequestContext.RequestID, "version": req.Version,
	})
	status := 200
	if s := req.QueryStringParameters["status"]; s != "" {
		status, _ = strconv.Atoi(s)
	}
	resp := events.APIGatewayV2HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json", "X-Fn": "goapigw"},
		Body:       string(echo),
	}
	if c := req.QueryStringParameters["cookie"]; c != "" {
		resp.Cookies = []string{c + "=1; Path=/", "second=2"}
	}
	if req.QueryStringParameters["binary"] == "1" {
		resp.Headers["Content-Type"] = "application/octet-stream"
		resp.Body = base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})
		resp.IsBase64Encoded = true
	}
	return resp, nil
}

func main() { lambda.Start(handle) }
