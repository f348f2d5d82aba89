package client

import (
	"context"
	"net/url"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// CreateKey creates an access key of the Lambda API with a description.
// The answer holds the secret access key: the only time it is shown.
func (c *Client) CreateKey(ctx context.Context, description string) (*v1.AccessKey, error) {
	var k v1.AccessKey
	if err := c.postJSON(ctx, "/v1/keys", v1.AccessKeySpec{Description: description}, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// Keys returns every access key, oldest first, without secrets.
func (c *Client) Keys(ctx context.Context) ([]v1.AccessKey, error) {
	var l v1.AccessKeyList
	err := c.getJSON(ctx, "/v1/keys", &l)
	return l.Keys, err
}

// RemoveKey removes access key id: requests signed with it are refused
// from then on.
func (c *Client) RemoveKey(ctx context.Context, id string) error {
	return c.deletePath(ctx, "/v1/keys/"+url.PathEscape(id))
}

// BaseURL is the server's URL the client calls, e.g. http://127.0.0.1:8080:
// the endpoint URL of the AWS SDKs and the AWS CLI.
func (c *Client) BaseURL() string { return c.base }
