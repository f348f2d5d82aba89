// Package kube connects Stratus to a Kubernetes cluster: the client the
// kube sandbox driver, the Lease-based ownership and the services'
// Deployments share, and the names and labels of what Stratus makes there.
package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stratus-run/stratus"
)

// Labels Stratus puts on what it makes in a cluster.
const (
	// LabelManaged marks every object Stratus made ("stratus").
	LabelManaged = "app.kubernetes.io/managed-by"
	// LabelNode names the server (its node name) that made the object.
	LabelNode = "stratus.run/node"
	// LabelSandbox names the sandbox a pod runs (sandbox.Spec.ID).
	LabelSandbox = "stratus.run/sandbox"
	// LabelFunction and LabelService name the workload.
	LabelFunction = "stratus.run/function"
	LabelService  = "stratus.run/service"
	// RegionLabel is the well-known node label of a node's region.
	RegionLabel = "topology.kubernetes.io/region"
)

// Managed is LabelManaged's value.
const Managed = "stratus"

// namespaceFile holds a pod's namespace where its service account's
// credentials are mounted.
const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Client is a connection to one namespace of a cluster.
type Client struct {
	// Config is the REST configuration (for clients of other API groups).
	Config *rest.Config
	// Interface is the typed clientset.
	Interface kubernetes.Interface
	// Namespace is where Stratus works.
	Namespace string
}

// Connect makes a Client from kubeconfig (a file; empty: the in-cluster
// configuration of the pod this process runs in) for namespace (empty:
// the pod's own namespace, else the kubeconfig's current context's, else
// "default"). It does not contact the cluster.
func Connect(kubeconfig, namespace string) (*Client, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: no --kubeconfig and not in a pod of a cluster (%v): %w", err, stratus.ErrInvalid)
		}
		if namespace == "" {
			if b, rerr := os.ReadFile(namespaceFile); rerr == nil {
				namespace = strings.TrimSpace(string(b))
			}
		}
	} else {
		loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{})
		cfg, err = loader.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: kubeconfig %s: %v: %w", kubeconfig, err, stratus.ErrInvalid)
		}
		if namespace == "" {
			if ns, _, nerr := loader.Namespace(); nerr == nil {
				namespace = ns
			}
		}
	}
	if namespace == "" {
		namespace = "default"
	}
	cfg.UserAgent = "stratus"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %v: %w", err, stratus.ErrInvalid)
	}
	return &Client{Config: cfg, Interface: cs, Namespace: namespace}, nil
}

// Name returns a DNS-1123 label (at most 63 lower-case letters, digits
// and '-', starting and ending with a letter or digit) for the parts
// joined with '-': the joined text itself when it is one, else its
// letters and digits, lower-cased, cut to leave room for '-' and eight
// hex digits of its SHA-256, so that distinct texts keep distinct names.
func Name(parts ...string) string {
	s := strings.Join(parts, "-")
	if validLabel(s) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	base := strings.Trim(b.String(), "-")
	const room = 63 - 9
	if len(base) > room {
		base = strings.TrimRight(base[:room], "-")
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:4])
	if base == "" {
		return "x-" + h
	}
	return base + "-" + h
}

// validLabel reports whether s is a DNS-1123 label.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}
