package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/events"
)

// scheduler keeps the schedules; *events.Scheduler is one.
type scheduler interface {
	Create(ctx context.Context, spec events.ScheduleSpec) (*stratus.Schedule, error)
	Delete(ctx context.Context, name string) error
	List(ctx context.Context) ([]stratus.Schedule, error)
	Get(ctx context.Context, name string) (*stratus.Schedule, error)
}

// maxScheduleBody bounds the body of POST /v1/schedules: the event
// size limit plus room for the other fields.
const maxScheduleBody = events.DefaultMaxEventSize + 64<<10

// routeSchedules registers the schedule routes on mux.
func (s *Server) routeSchedules(mux *http.ServeMux, sched scheduler) {
	if sched == nil {
		return
	}
	auth := s.requireToken
	mux.Handle("POST /v1/schedules", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var spec v1.ScheduleSpec
		if err := decodeSpec(w, r, maxScheduleBody, "schedule", &spec); err != nil {
			s.answer.Error(w, r, err)
			return
		}
		fn, err := s.checkTarget(spec.Function)
		if err != nil {
			s.answer.Error(w, r, fmt.Errorf("schedule %q: %w", spec.Name, err))
			return
		}
		sc, err := sched.Create(r.Context(), events.ScheduleSpec{
			Name: spec.Name, Function: fn, Cron: spec.Cron, Rate: spec.Rate, At: spec.At,
			Timezone: spec.Timezone, Data: spec.Data,
		})
		if err != nil {
			s.answer.Error(w, r, err)
			return
		}
		s.log.Info("schedule created", "schedule", sc.Name, "fn", sc.Function, "expression", sc.Expression, "timezone", sc.Timezone)
		s.answer.JSON(w, r, http.StatusCreated, scheduleView(sc))
	})))
	mux.Handle("GET /v1/schedules", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list, err := sched.List(r.Context())
		if err != nil {
			s.answer.Error(w, r, err)
			return
		}
		out := v1.ScheduleList{Schedules: make([]v1.Schedule, 0, len(list))}
		for i := range list {
			out.Schedules = append(out.Schedules, scheduleView(&list[i]))
		}
		s.answer.JSON(w, r, http.StatusOK, out)
	})))
	mux.Handle("GET /v1/schedules/{name}", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc, err := sched.Get(r.Context(), r.PathValue("name"))
		if err != nil {
			s.answer.Error(w, r, err)
			return
		}
		s.answer.JSON(w, r, http.StatusOK, scheduleView(sc))
	})))
	mux.Handle("DELETE /v1/schedules/{name}", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := sched.Delete(r.Context(), r.PathValue("name")); err != nil {
			s.answer.Error(w, r, err)
			return
		}
		s.log.Info("schedule deleted", "schedule", r.PathValue("name"))
		w.WriteHeader(http.StatusNoContent)
	})))
}

func scheduleView(sc *stratus.Schedule) v1.Schedule {
	v := v1.Schedule{
		Name: sc.Name, Function: sc.Function, Expression: sc.Expression, Timezone: sc.Timezone,
		Data: sc.Data, CreatedAt: sc.CreatedAt,
	}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC()
		return &t
	}
	v.LastFiredAt = opt(sc.LastFiredAt)
	v.NextFiringAt = opt(events.NextFiring(sc))
	return v
}
