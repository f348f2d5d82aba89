package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// postJSON POSTs in as JSON to path and decodes the answer into out.
func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request of %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	return c.send(req, "application/json", out)
}

// deletePath sends DELETE path.
func (c *Client) deletePath(ctx context.Context, path string) error {
	resp, err := c.do(ctx, http.MethodDelete, path, nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// CreateTopic creates topic name.
func (c *Client) CreateTopic(ctx context.Context, name string) (*v1.Topic, error) {
	var tp v1.Topic
	if err := c.postJSON(ctx, "/v1/topics", v1.TopicSpec{Name: name}, &tp); err != nil {
		return nil, err
	}
	return &tp, nil
}

// Topics returns every topic, ordered by name.
func (c *Client) Topics(ctx context.Context) ([]v1.Topic, error) {
	var l v1.TopicList
	err := c.getJSON(ctx, "/v1/topics", &l)
	return l.Topics, err
}

// RemoveTopic deletes topic name and its subscriptions.
func (c *Client) RemoveTopic(ctx context.Context, name string) error {
	return c.deletePath(ctx, "/v1/topics/"+url.PathEscape(name))
}

// Publish posts body to topic's events with contentType:
// v1.ContentTypeCloudEvent for one structured event,
// v1.ContentTypeCloudEventBatch for a batch, anything else for binary
// mode, where header carries the ce-* attributes. It returns the ids of
// the stored events.
func (c *Client) Publish(ctx context.Context, topic, contentType string, header http.Header, body []byte) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/topics/"+url.PathEscape(topic)+"/events", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	var p v1.Published
	if err := c.send(req, contentType, &p); err != nil {
		return nil, err
	}
	return p.IDs, nil
}

// Subscribe subscribes spec's function or URL to topic.
func (c *Client) Subscribe(ctx context.Context, topic string, spec v1.SubscriptionSpec) (*stratus.Subscription, error) {
	var sub stratus.Subscription
	if err := c.postJSON(ctx, "/v1/topics/"+url.PathEscape(topic)+"/subscriptions", spec, &sub); err != nil {
		return nil, err
	}
	return &sub, nil
}

// Subscriptions returns the subscriptions of topic, or of every topic when
// topic is "", with what each has not yet delivered.
func (c *Client) Subscriptions(ctx context.Context, topic string) ([]v1.Subscription, error) {
	path := "/v1/subscriptions"
	if topic != "" {
		path = "/v1/topics/" + url.PathEscape(topic) + "/subscriptions"
	}
	var l v1.SubscriptionList
	err := c.getJSON(ctx, path, &l)
	return l.Subscriptions, err
}

// Unsubscribe deletes subscription id.
func (c *Client) Unsubscribe(ctx context.Context, id string) error {
	return c.deletePath(ctx, "/v1/subscriptions/"+url.PathEscape(id))
}
