//go:build kube && node

package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// TestKubeNodeRunsServices runs a server with --sandbox kube against a
// cluster with a real node: a service deployed from an image that only
// the node's containerd holds (the server runs it by its reference)
// becomes a Deployment whose pod on the node answers /svc/NAME; idle, it
// scales to zero, and a request brings it back; a new revision from
// another image serves the new version, and the old revision's
// Deployment goes.
func TestKubeNodeRunsServices(t *testing.T) {
	c := kubetest.StartWithNode(t)
	ns := c.Namespace(t)
	layer, err := gosvcLayer()
	if err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"one", "two"} {
		img := imageOf(t, ggcr.Config{
			Entrypoint: []string{"/app/gosvc"}, Env: []string{"PATH=/app:/bin", "REV=" + rev},
		}, layer)
		c.ImportImage(t, "stratus.local/gosvc:"+rev, img)
	}

	// No function runs here: the agent image is never pulled.
	s := startServer(t, append([]string{"--sandbox", "kube", "--kubeconfig", c.Kubeconfig(), "--namespace", ns,
		"--agent-image", "stratus.local/stratus:unused"}, fastServices...)...)
	began := time.Now()
	s.mustCLI("service", "deploy", "web", "--image", "stratus.local/gosvc:one", "--health", "/healthz", "--memory", "128")
	t.Logf("deploy, Deployment made and its pod ready: %s", time.Since(began).Round(time.Millisecond))

	if code, body := s.get("/svc/web/"); code != http.StatusOK || !strings.Contains(body, "rev=one") {
		t.Fatalf("GET /svc/web/: %d %s\nserver log:\n%s", code, body, s.Stderr())
	}
	began = time.Now()
	if code, _ := s.get("/svc/web/"); code != http.StatusOK {
		t.Errorf("warm GET: %d", code)
	}
	t.Logf("warm request: %s", time.Since(began).Round(time.Millisecond))
	pods, err := c.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelService + "=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != c.RealNode() {
		t.Fatalf("pods %d; want one on %s", len(pods.Items), c.RealNode())
	}
	if out := s.mustCLI("service", "get", "web"); !strings.Contains(out, pods.Items[0].Name) {
		t.Errorf("stratus service get web does not show pod %s:\n%s", pods.Items[0].Name, out)
	}

	// Idle, it scales to zero: no pod is left.
	eventually.Nil(t, time.Minute, "no pod once idle", func() error {
		l, err := c.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelService + "=web"})
		if err != nil {
			return err
		}
		if n := len(l.Items); n > 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	began = time.Now()
	if code, body := s.get("/svc/web/"); code != http.StatusOK || !strings.Contains(body, "rev=one") {
		t.Fatalf("GET from zero: %d %s\nserver log:\n%s", code, body, s.Stderr())
	}
	t.Logf("request from zero (pod made, started and ready): %s", time.Since(began).Round(time.Millisecond))

	// A new revision serves the new version; the old one's objects go.
	s.mustCLI("service", "deploy", "web", "--image", "stratus.local/gosvc:two", "--health", "/healthz", "--memory", "128")
	if code, body := s.get("/svc/web/"); code != http.StatusOK || !strings.Contains(body, "rev=two") {
		t.Fatalf("GET after the roll: %d %s", code, body)
	}
	eventually.Nil(t, time.Minute, "revision 1's Deployment deleted", func() error {
		_, err := c.Client().AppsV1().Deployments(ns).Get(t.Context(), "stratus-web-r1", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return errors.Join(errors.New("still there"), err)
		}
		return nil
	})
	s.mustCLI("service", "rm", "web")
	eventually.Nil(t, time.Minute, "revision 2's Deployment deleted", func() error {
		_, err := c.Client().AppsV1().Deployments(ns).Get(t.Context(), "stratus-web-r2", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return errors.Join(errors.New("still there"), err)
		}
		return nil
	})
}
