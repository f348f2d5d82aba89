package lease

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/cluster"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/store"
)

// Store is what a cluster keeps its leases in.
var _ cluster.LeaseStore = (*Store)(nil)

func TestDurationSeconds(t *testing.T) {
	for _, c := range []struct {
		ttl  time.Duration
		want int32
	}{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{999 * time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{1500 * time.Millisecond, 2},
		{10 * time.Second, 10},
		{time.Hour, 3600},
		{math.MaxInt32 * time.Second, math.MaxInt32},
	} {
		if got, err := durationSeconds(c.ttl); err != nil || got != c.want {
			t.Errorf("durationSeconds(%v) = %d, %v; want %d", c.ttl, got, err, c.want)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, math.MaxInt32*time.Second + 1} {
		if got, err := durationSeconds(ttl); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("durationSeconds(%v) = %d, %v; want ErrInvalid", ttl, got, err)
		}
	}
}

func TestParseName(t *testing.T) {
	for _, c := range []struct {
		name, object, label, value string
	}{
		{"function/f", "stratus-function-f", kube.LabelFunction, "f"},
		{"service/web", "stratus-service-web", kube.LabelService, "web"},
		// Function names allow upper case and '_' and 64 characters; label
		// values allow the first two but not a leading '_' nor 64.
		{"function/My_Fn", "stratus-function-my-fn-" + hash("stratus-function-My_Fn"), kube.LabelFunction, "My_Fn"},
		{"function/_x", "stratus-function-x-" + hash("stratus-function-_x"), kube.LabelFunction, "x-" + hash("_x")},
		{"service/a-b", "stratus-service-a-b", kube.LabelService, "a-b"},
	} {
		r, err := parseName(c.name)
		if err != nil {
			t.Errorf("parseName(%q): %v", c.name, err)
			continue
		}
		obj := r.newObject()
		if obj.Name != c.object || obj.Labels[c.label] != c.value || obj.Labels[kube.LabelManaged] != kube.Managed ||
			obj.Annotations[AnnotationLease] != c.name {
			t.Errorf("parseName(%q): object %s, labels %v, annotations %v; want %s with %s=%s",
				c.name, obj.Name, obj.Labels, obj.Annotations, c.object, c.label, c.value)
		}
	}
	for _, name := range []string{"", "f", "function/", "/f", "node/f", "Function/f"} {
		if _, err := parseName(name); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("parseName(%q): %v, want ErrInvalid", name, err)
		}
	}
}

// hash is the 8 hex digits kube.Name appends to s.
func hash(s string) string {
	n := kube.Name(s)
	return n[strings.LastIndexByte(n, '-')+1:]
}

// TestObjectNamesDistinct: names kube.Name has to cut or hash stay apart,
// and the kinds too.
func TestObjectNamesDistinct(t *testing.T) {
	long := strings.Repeat("a", 64)
	names := []string{
		"function/f", "service/f", "function/F", "function/f_", "function/f-",
		"function/" + long, "function/" + long[:63] + "b", "service/" + long,
		"function/a_b", "function/a-b", "function/A-B",
	}
	seen := map[string]string{}
	for _, name := range names {
		r, err := parseName(name)
		if err != nil {
			t.Fatalf("parseName(%q): %v", name, err)
		}
		if errs := validation.IsDNS1123Label(r.object); len(errs) > 0 {
			t.Errorf("%q: object name %q: %v", name, r.object, errs)
		}
		if other, ok := seen[r.object]; ok {
			t.Errorf("%q and %q share the object name %q", name, other, r.object)
		}
		seen[r.object] = name
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"node-1":                 "node-1",
		"Node_1.eu":              "Node_1.eu",
		"_x":                     kube.Name("_x"),
		"ip-10-0-0-7:8080":       kube.Name("ip-10-0-0-7:8080"),
		strings.Repeat("n", 64):  kube.Name(strings.Repeat("n", 64)),
		strings.Repeat("n", 63):  strings.Repeat("n", 63),
		"stratus-7d9f8b6c5-x2x4": "stratus-7d9f8b6c5-x2x4",
	} {
		got := labelValue(in)
		if got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("labelValue(%q) = %q: %v", in, got, errs)
		}
	}
}

// TestAcquired is the decision table of AcquireLease, as the store's SQL
// makes it.
func TestAcquired(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	held := func(holder string, epoch int64, left time.Duration) store.Lease {
		return store.Lease{Name: "function/f", Holder: holder, Epoch: epoch, Expires: now.Add(left)}
	}
	for _, c := range []struct {
		what  string
		l     store.Lease
		epoch int64
		take  bool
	}{
		{"held by another", held("b", 3, time.Second), 3, false},
		{"held by another, a nanosecond left", held("b", 3, time.Nanosecond), 3, false},
		{"another's, expired now", held("b", 3, 0), 4, true},
		{"another's, expired", held("b", 3, -time.Hour), 4, true},
		{"one's own: an extension", held("a", 3, time.Second), 3, true},
		{"one's own, expired: a new holding", held("a", 3, 0), 4, true},
		{"released", store.Lease{Name: "function/f", Epoch: 3}, 4, true},
	} {
		epoch, take := acquired(c.l, "a", now)
		if epoch != c.epoch || take != c.take {
			t.Errorf("%s: acquired = %d, %v; want %d, %v", c.what, epoch, take, c.epoch, c.take)
		}
	}
}

// TestHoldAndToLease: what hold writes reads back as the lease it means;
// an extension keeps the acquire time, a new holding does not; a
// released object is a lease without holder or expiry.
func TestHoldAndToLease(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	r, err := parseName("function/f")
	if err != nil {
		t.Fatal(err)
	}
	obj := r.newObject()
	hold(obj, "a", 10, t0, 1)
	if diff := cmp.Diff(store.Lease{Name: "function/f", Holder: "a", Epoch: 1, Expires: t0.Add(10 * time.Second)}, toLease(r.name, obj)); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	if obj.Labels[kube.LabelNode] != "a" {
		t.Errorf("holder label %q, want a", obj.Labels[kube.LabelNode])
	}
	t1 := t0.Add(3 * time.Second)
	hold(obj, "a", 2, t1, 1)
	if !obj.Spec.AcquireTime.Time.Equal(t0) || !obj.Spec.RenewTime.Time.Equal(t1) || *obj.Spec.LeaseDurationSeconds != 2 {
		t.Errorf("extension: acquired %v, renewed %v, %d s; want acquired at %v, renewed %v for 2 s",
			obj.Spec.AcquireTime, obj.Spec.RenewTime, *obj.Spec.LeaseDurationSeconds, t0, t1)
	}
	hold(obj, "b", 2, t1, 2)
	if !obj.Spec.AcquireTime.Time.Equal(t1) || *obj.Spec.LeaseTransitions != 2 || obj.Labels[kube.LabelNode] != "b" {
		t.Errorf("new holding: acquired %v, transitions %d, holder label %q", obj.Spec.AcquireTime, *obj.Spec.LeaseTransitions, obj.Labels[kube.LabelNode])
	}

	released := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{
		LeaseTransitions: ptr(int32(2)), RenewTime: &metav1.MicroTime{Time: t1}, LeaseDurationSeconds: ptr(int32(2)),
	}}
	if diff := cmp.Diff(store.Lease{Name: "function/f", Epoch: 2}, toLease("function/f", released)); diff != "" {
		t.Errorf("released (-want +got):\n%s", diff)
	}
	if got := toLease("function/f", &coordinationv1.Lease{}); got != (store.Lease{Name: "function/f"}) {
		t.Errorf("empty spec: %+v", got)
	}
}

func ptr[T any](v T) *T { return &v }

// FuzzParseName: any accepted lease name has an object name that is a
// DNS-1123 label and label values that are label values.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"function/f", "service/web", "function/My_Fn", "service/", "function/" + strings.Repeat("x", 70), "function/a/b", "function/é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		r, err := parseName(name)
		if err != nil {
			return
		}
		obj := r.newObject()
		if errs := validation.IsDNS1123Label(obj.Name); len(errs) > 0 {
			t.Errorf("%q: object name %q: %v", name, obj.Name, errs)
		}
		for k, v := range obj.Labels {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%q: label %s=%q: %v", name, k, v, errs)
			}
		}
	})
}
