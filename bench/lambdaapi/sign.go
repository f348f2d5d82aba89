package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// signService is the credential scope's service of every Lambda API
// request.
const signService = "lambda"

// signedHeader is the request headers of a POST of body (as
// application/json) to url signed with SigV4 by aws-sdk-go-v2's signer
// at time at: Authorization, X-Amz-Date and whatever else the signer
// adds. Sent again with the same method, URL, body and Content-Type
// (benchkit's load generator sends exactly that), the request verifies
// for MaxSkew around at: the load generator replays it instead of signing
// each request, so the server verifies every request and the client pays
// for one signature per run.
func signedHeader(ctx context.Context, keyID, secret, region, url string, body []byte, at time.Time) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), signService, region, at); err != nil {
		return nil, fmt.Errorf("sign %s: %w", url, err)
	}
	h := http.Header{}
	for k, vs := range req.Header {
		if k == "Content-Type" {
			continue // the load generator sets it
		}
		h[k] = vs
	}
	return h, nil
}

// tampered is h with the last hex digit of its signature changed: a
// request the server must refuse (403 InvalidSignatureException).
func tampered(h http.Header) http.Header {
	out := h.Clone()
	a := []byte(out.Get("Authorization"))
	if len(a) == 0 {
		return out
	}
	if a[len(a)-1] == '0' {
		a[len(a)-1] = '1'
	} else {
		a[len(a)-1] = '0'
	}
	out.Set("Authorization", string(a))
	return out
}
