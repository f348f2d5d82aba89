package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
)

// topicService keeps topics and subscriptions and stores published
// events; *events.Topics is one.
type topicService interface {
	CreateTopic(ctx context.Context, name string) (*stratus.Topic, error)
	GetTopic(ctx context.Context, name string) (*stratus.Topic, error)
	ListTopics(ctx context.Context) ([]stratus.Topic, error)
	DeleteTopic(ctx context.Context, name string) error
	Publish(ctx context.Context, topic string, events []cloudevent.Event) error
	Subscribe(ctx context.Context, sub stratus.Subscription) (*stratus.Subscription, error)
	Subscriptions(ctx context.Context, topic string) ([]stratus.Subscription, error)
	Unsubscribe(ctx context.Context, id string) error
	// SubscriptionDepths returns what each subscription has not yet
	// delivered, by ID (absent: nothing yet).
	SubscriptionDepths(ctx context.Context) (map[string]events.SubscriptionDepth, error)
}

// maxPublishBatch is the most events one batched publish may carry.
const maxPublishBatch = 1000

// maxSpecBody bounds the JSON bodies of topic and subscription requests.
const maxSpecBody = 64 << 10

// topicRoutes serves topics, their events and subscriptions.
type topicRoutes struct {
	s  *Server
	tp topicService
	// maxEvent bounds each published event (the async event limit);
	// maxBody bounds a publish request's body.
	maxEvent, maxBody int64
}

// routeTopics registers the topic routes on mux; a nil tp leaves them
// out. maxEvent bounds each published event, maxBody a publish request.
func (s *Server) routeTopics(mux *http.ServeMux, tp topicService, maxEvent, maxBody int64) {
	if tp == nil {
		return
	}
	if maxEvent <= 0 {
		maxEvent = cloudevent.DefaultMaxBytes
	}
	// A single structured event may take twice its size as JSON.
	maxBody = max(maxBody, 2*maxEvent+maxSpecBody)
	t := &topicRoutes{s: s, tp: tp, maxEvent: maxEvent, maxBody: maxBody}
	auth := s.requireToken
	mux.Handle("POST /v1/topics", auth(http.HandlerFunc(t.create)))
	mux.Handle("GET /v1/topics", auth(http.HandlerFunc(t.list)))
	mux.Handle("GET /v1/topics/{name}", auth(http.HandlerFunc(t.get)))
	mux.Handle("DELETE /v1/topics/{name}", auth(http.HandlerFunc(t.remove)))
	mux.Handle("POST /v1/topics/{name}/events", auth(http.HandlerFunc(t.publish)))
	mux.Handle("POST /v1/topics/{name}/subscriptions", auth(http.HandlerFunc(t.subscribe)))
	mux.Handle("GET /v1/topics/{name}/subscriptions", auth(http.HandlerFunc(t.subscriptions)))
	mux.Handle("GET /v1/subscriptions", auth(http.HandlerFunc(t.subscriptions)))
	mux.Handle("DELETE /v1/subscriptions/{id}", auth(http.HandlerFunc(t.unsubscribe)))
}

// decodeSpec reads r's body, at most limit bytes (ErrTooLarge beyond),
// as one JSON object into v, refusing unknown fields (ErrInvalid).
func decodeSpec(w http.ResponseWriter, r *http.Request, limit int64, what string, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%s: body over %d bytes: %w", what, mbe.Limit, stratus.ErrTooLarge)
		}
		return fmt.Errorf("%s: want a JSON object: %v: %w", what, err, stratus.ErrInvalid)
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return fmt.Errorf("%s: want one JSON object: %w", what, stratus.ErrInvalid)
	}
	return nil
}

func (t *topicRoutes) create(w http.ResponseWriter, r *http.Request) {
	var spec v1.TopicSpec
	if err := decodeSpec(w, r, maxSpecBody, "topic", &spec); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	tp, err := t.tp.CreateTopic(r.Context(), spec.Name)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("topic created", "topic", tp.Name)
	t.s.answer.JSON(w, r, http.StatusCreated, v1.Topic{Name: tp.Name, CreatedAt: tp.CreatedAt})
}

func (t *topicRoutes) list(w http.ResponseWriter, r *http.Request) {
	tps, err := t.tp.ListTopics(r.Context())
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	subs, err := t.tp.Subscriptions(r.Context(), "")
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	count := map[string]int{}
	for _, sub := range subs {
		count[sub.Topic]++
	}
	pending := t.topicPending(r, subs)
	out := v1.TopicList{Topics: make([]v1.Topic, 0, len(tps))}
	for _, tp := range tps {
		out.Topics = append(out.Topics, v1.Topic{Name: tp.Name, CreatedAt: tp.CreatedAt, Subscriptions: count[tp.Name],
			Pending: pending(tp.Name)})
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
}

// topicPending returns a function giving each topic's events pending,
// summed over subs; nil for every topic when JetStream cannot be read.
func (t *topicRoutes) topicPending(r *http.Request, subs []stratus.Subscription) func(topic string) *int64 {
	depths, err := t.tp.SubscriptionDepths(r.Context())
	if err != nil {
		t.s.log.Debug("read subscription depths", "err", err)
		return func(string) *int64 { return nil }
	}
	sum := map[string]int64{}
	for _, sub := range subs {
		sum[sub.Topic] += depths[sub.ID].Pending
	}
	return func(topic string) *int64 {
		n := sum[topic]
		return &n
	}
}

func (t *topicRoutes) get(w http.ResponseWriter, r *http.Request) {
	tp, err := t.tp.GetTopic(r.Context(), r.PathValue("name"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	subs, err := t.tp.Subscriptions(r.Context(), tp.Name)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.answer.JSON(w, r, http.StatusOK, v1.Topic{Name: tp.Name, CreatedAt: tp.CreatedAt, Subscriptions: len(subs),
		Pending: t.topicPending(r, subs)(tp.Name)})
}

func (t *topicRoutes) remove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := t.tp.DeleteTopic(r.Context(), name); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("topic deleted", "topic", name)
	w.WriteHeader(http.StatusNoContent)
}

// publish stores the events of the request (binary, structured or batched
// mode) and answers 202 with their ids once JetStream holds them all.
func (t *topicRoutes) publish(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := t.tp.GetTopic(r.Context(), name); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, t.maxBody)
	evs, err := cloudevent.FromRequest(r, t.maxEvent, maxPublishBatch)
	if err != nil {
		if !errors.Is(err, stratus.ErrInvalid) && !errors.Is(err, stratus.ErrTooLarge) {
			err = fmt.Errorf("publish: %v: %w", err, stratus.ErrInvalid) // the body could not be read
		}
		t.s.answer.Error(w, r, err)
		return
	}
	if err := t.tp.Publish(r.Context(), name, evs); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	out := v1.Published{IDs: make([]string, 0, len(evs))}
	for _, e := range evs {
		out.IDs = append(out.IDs, e.ID)
	}
	t.s.answer.JSON(w, r, http.StatusAccepted, out)
}

func (t *topicRoutes) subscribe(w http.ResponseWriter, r *http.Request) {
	var spec v1.SubscriptionSpec
	if err := decodeSpec(w, r, maxSpecBody, "subscription", &spec); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	fn, err := t.s.checkTarget(spec.Function)
	if err != nil {
		t.s.answer.Error(w, r, fmt.Errorf("subscribe: %w", err))
		return
	}
	sub, err := t.tp.Subscribe(r.Context(), stratus.Subscription{
		Topic: r.PathValue("name"), Function: fn, URL: spec.URL, Filter: spec.Filter, Batch: spec.Batch,
	})
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("subscribed", "topic", sub.Topic, "subscription", sub.ID, "fn", sub.Function, "url", sub.URL)
	t.s.answer.JSON(w, r, http.StatusCreated, sub)
}

// subscriptions lists the subscriptions of one topic ({name}) or of all.
func (t *topicRoutes) subscriptions(w http.ResponseWriter, r *http.Request) {
	subs, err := t.tp.Subscriptions(r.Context(), r.PathValue("name"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	out := v1.SubscriptionList{Subscriptions: make([]v1.Subscription, 0, len(subs))}
	depths, err := t.tp.SubscriptionDepths(r.Context())
	if err != nil {
		t.s.log.Debug("read subscription depths", "err", err)
	}
	for _, sub := range subs {
		v := v1.Subscription{Subscription: sub}
		if err == nil {
			d := depths[sub.ID]
			age := d.Oldest.Seconds()
			v.Pending, v.OldestAgeSec = &d.Pending, &age
		}
		out.Subscriptions = append(out.Subscriptions, v)
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
}

func (t *topicRoutes) unsubscribe(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := t.tp.Unsubscribe(r.Context(), id); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("unsubscribed", "subscription", id)
	w.WriteHeader(http.StatusNoContent)
}
