package kube

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestName(t *testing.T) {
	for _, tc := range []struct{ parts []string }{
		{[]string{"fn", "hello"}},
		{[]string{"function", "My_Func"}},
		{[]string{"svc", strings.Repeat("a", 80)}},
		{[]string{"-", "_"}},
		{[]string{""}},
		{[]string{"a.b/c"}},
	} {
		got := Name(tc.parts...)
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("Name(%q) = %q: not a DNS-1123 label: %v", tc.parts, got, errs)
		}
	}
	if got := Name("fn", "hello"); got != "fn-hello" {
		t.Errorf("Name(fn, hello) = %q: a valid label is kept", got)
	}
	// Texts that lose characters stay apart.
	if a, b := Name("My_Func"), Name("my-func"); a == b {
		t.Errorf("Name(My_Func) = Name(my-func) = %q", a)
	}
	if a, b := Name(strings.Repeat("a", 70)+"1"), Name(strings.Repeat("a", 70)+"2"); a == b {
		t.Errorf("two long names cut to the same label %q", a)
	}
}

func FuzzName(f *testing.F) {
	for _, s := range []string{"", "fn-x", "Über", "a_b", strings.Repeat("-", 70), "9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if errs := validation.IsDNS1123Label(Name(s)); len(errs) > 0 {
			t.Fatalf("Name(%q) = %q: %v", s, Name(s), errs)
		}
	})
}

func TestConnect(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: team}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Connect(kc, "")
	if err != nil || c.Namespace != "team" || c.Config.Host != "https://127.0.0.1:6443" {
		t.Fatalf("Connect = %+v, %v; want namespace team from the context", c, err)
	}
	if c, err := Connect(kc, "other"); err != nil || c.Namespace != "other" {
		t.Errorf("Connect with a namespace = %+v, %v", c, err)
	}
	if _, err := Connect(filepath.Join(dir, "missing"), ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Connect(missing file) = %v; want an error naming it", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := Connect("", ""); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("Connect outside a pod without a kubeconfig = %v; want an error naming --kubeconfig", err)
	}
}

func TestRegionAffinity(t *testing.T) {
	values := func(a *corev1.Affinity) []string {
		if a == nil {
			return nil
		}
		return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values
	}
	if a := RegionAffinity(nil, ""); a != nil {
		t.Errorf("no regions: %+v, want no affinity", a)
	}
	if got := values(RegionAffinity(nil, "eu-1")); !slices.Equal(got, []string{"eu-1"}) {
		t.Errorf("the server's region: %q", got)
	}
	allowed := []string{"us-1", "us-2"}
	a := RegionAffinity(allowed, "eu-1")
	if got := values(a); !slices.Equal(got, allowed) {
		t.Errorf("allowed regions: %q, want them in place of the server's", got)
	}
	if e := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]; e.Key != RegionLabel || e.Operator != corev1.NodeSelectorOpIn {
		t.Errorf("requirement %+v", e)
	}
	allowed[0] = "changed"
	if values(a)[0] != "us-1" {
		t.Error("the affinity shares the caller's slice")
	}
}
