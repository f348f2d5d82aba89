package helm_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/stratus-run/stratus/internal/clustertest"
)

// chartDir is the chart, relative to this package.
const chartDir = "stratus"

// helmTimeout bounds one run of helm (lint, template, install, upgrade).
const helmTimeout = 2 * time.Minute

// helmBinary returns the path of the helm program, built once per version
// (pinned in internal/kubetest/tools/helm) and Go toolchain into
// ~/.cache/stratus-tools. A missing go command skips t, or fails it under
// CI=true (clustertest.BuildGoTool).
func helmBinary(t testing.TB) string {
	t.Helper()
	dir := clustertest.BuildGoTool(t, clustertest.GoTool{
		Name:     "helm",
		ModDir:   "internal/kubetest/tools/helm",
		Module:   "helm.sh/helm/v4",
		Binaries: map[string]string{"helm": "helm.sh/helm/v4/cmd/helm"},
		LDFlags: func(version string) string {
			// Without it helm calls itself v4.3 (its source's default).
			return "-s -w -X helm.sh/helm/v4/internal/version.version=" + version
		},
		Timeout: 30 * time.Minute,
	})
	return filepath.Join(dir, "helm")
}

// helm runs the helm program with args, its configuration, cache and data
// in a temp dir and, unless env names one, no cluster; it returns its
// output and, if it failed, an error holding its standard error.
func helm(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	bin := helmBinary(t) // built first: the first build takes minutes of the bound's own
	ctx, cancel := context.WithTimeout(context.Background(), helmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String()) + " (" + err.Error() + ")")
	}
	return stdout.String(), nil
}

// template renders the chart as release "demo" in namespace "prod" with
// args (values files, --set) and decodes every object.
func template(t testing.TB, args ...string) []runtime.Object {
	t.Helper()
	out, err := helm(t, nil, append([]string{"template", "demo", chartDir, "--namespace", "prod"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return decode(t, out)
}

// decode decodes the documents of a multi-document YAML stream with
// client-go's scheme: a kind it does not know, or a field its type lacks,
// fails t.
func decode(t testing.TB, manifests string) []runtime.Object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read the rendered YAML: %v", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		// Strict: a misspelt field is an error, not a field dropped.
		obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode a rendered object: %v\n%s", err, doc)
		}
		if gvk.Kind == "" {
			t.Fatalf("a rendered object has no kind:\n%s", doc)
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		t.Fatalf("helm template rendered nothing:\n%s", manifests)
	}
	return objs
}

// strictDecoder is client-go's scheme's universal deserializer, strict:
// it refuses unknown and duplicate fields.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// stripComments drops the lines that are only a YAML comment (helm
// writes "# Source: ..." above each object).
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			b.Write(line)
		}
	}
	return b.Bytes()
}

// only returns the one object of type T, failing t unless
// there is exactly one of its type.
func only[T runtime.Object](t testing.TB, objs []runtime.Object) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("rendered %d objects of type %T; want 1", len(found), zero)
	}
	return found[0]
}

// kinds returns the sorted kinds of objs.
func kinds(objs []runtime.Object) []string {
	var ks []string
	for _, o := range objs {
		gvks, _, err := scheme.Scheme.ObjectKinds(o)
		if err != nil || len(gvks) == 0 {
			ks = append(ks, "?")
			continue
		}
		ks = append(ks, gvks[0].Kind)
	}
	slices.Sort(ks)
	return ks
}

// wantRules are exactly what the server may do in its namespace.
var wantRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "create", "update", "delete"}},
	{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
}

func TestChartRendersACluster(t *testing.T) {
	objs := template(t, "-f", "testdata/cluster.yaml")

	want := []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"}
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("kinds rendered (-want +got); no Secret, the token's is given:\n%s", diff)
	}
	checkNamespaces(t, objs, "prod")

	role := only[*rbacv1.Role](t, objs)
	if diff := cmp.Diff(wantRules, role.Rules); diff != "" {
		t.Errorf("Role rules (-want +got):\n%s", diff)
	}
	sa := only[*corev1.ServiceAccount](t, objs)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount automountServiceAccountToken = %v; want false (only the server's pod asks for it)", sa.AutomountServiceAccountToken)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: "prod"}}
	rb := only[*rbacv1.RoleBinding](t, objs)
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}, rb.RoleRef); diff != "" {
		t.Errorf("RoleBinding roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(subject, rb.Subjects); diff != "" {
		t.Errorf("RoleBinding subjects (-want +got):\n%s", diff)
	}
	cr := only[*rbacv1.ClusterRole](t, objs)
	wantNodes := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}}
	if diff := cmp.Diff(wantNodes, cr.Rules); diff != "" {
		t.Errorf("ClusterRole rules (-want +got): only reading nodes:\n%s", diff)
	}
	if !strings.Contains(cr.Name, "prod") {
		t.Errorf("ClusterRole %q: want the namespace in its cluster-wide name", cr.Name)
	}
	crb := only[*rbacv1.ClusterRoleBinding](t, objs)
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != cr.Name {
		t.Errorf("ClusterRoleBinding roleRef = %+v; want ClusterRole %s", crb.RoleRef, cr.Name)
	}
	if diff := cmp.Diff(subject, crb.Subjects); diff != "" {
		t.Errorf("ClusterRoleBinding subjects (-want +got):\n%s", diff)
	}

	d := only[*appsv1.Deployment](t, objs)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("Deployment replicas = %v; want 3", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("pod serviceAccountName = %q; want %q", pod.ServiceAccountName, sa.Name)
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Errorf("pod automountServiceAccountToken = %v; want true: the server talks to the API server", pod.AutomountServiceAccountToken)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("pod has %d containers; want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "registry.example.com/stratus:1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %q pull %q; want registry.example.com/stratus:1.2.3 pull Always", c.Image, c.ImagePullPolicy)
	}
	wantArgs := []string{
		"server", "--sandbox=kube", "--listen=0.0.0.0:8080", "--namespace=prod",
		"--agent-image=registry.example.com/stratus:1.2.3", "--data=/var/lib/stratus",
		"--nats-creds=/etc/stratus/nats/server.creds", "--log-format=json",
	}
	if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
		t.Errorf("server args (-want +got):\n%s", diff)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "STRATUS_KUBE_ADDRESS", ValueFrom: fieldRef("status.podIP")},
		{Name: "STRATUS_NODE_NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "STRATUS_POD_NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "STRATUS_POD_UID", ValueFrom: fieldRef("metadata.uid")},
		{Name: "STRATUS_ADVERTISE", Value: "http://$(POD_IP):8080"},
		{Name: "STRATUS_REGION", Value: "eu-west"},
		{Name: "STRATUS_TOKEN", ValueFrom: secretRef("stratus-api-token", "api-token")},
		{Name: "STRATUS_STORE", Value: "postgres://stratus@db.example.com:5432/stratus?sslmode=verify-full"},
		{Name: "PGPASSWORD", ValueFrom: secretRef("stratus-db", "pg-password")},
		{Name: "STRATUS_NATS_URL", Value: "nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222"},
	}
	if diff := cmp.Diff(wantEnv, c.Env); diff != "" {
		t.Errorf("server env (-want +got):\n%s", diff)
	}
	checkNATSCredentials(t, pod, c, "stratus-nats", "server.creds", "/etc/stratus/nats")
	if got := c.Resources.Limits.Memory().String(); got != "2Gi" {
		t.Errorf("memory limit %s; want 2Gi from the values", got)
	}
	checkData(t, pod, c, "20Gi")
	checkSecurity(t, pod, c)
	checkProbes(t, c)

	podLabels := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("Deployment selector %v does not select its own pods' labels %v (%v)", d.Spec.Selector, podLabels, err)
	}
	pdb := only[*policyv1.PodDisruptionBudget](t, objs)
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB maxUnavailable %v minAvailable %v; want maxUnavailable 1 only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) || pdbSel.String() != sel.String() {
		t.Errorf("PDB selector %q; want the Deployment's %q, matching its pods %v (%v)", pdbSel, sel, podLabels, err)
	}
	svc := only[*corev1.Service](t, objs)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %q; want ClusterIP", svc.Spec.Type)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not select the server's pods %v", svc.Spec.Selector, podLabels)
	}
	if diff := cmp.Diff(d.Spec.Selector.MatchLabels, svc.Spec.Selector); diff != "" {
		t.Errorf("Service selector differs from the Deployment's (-deployment +service):\n%s", diff)
	}
	wantPorts := []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}
	if diff := cmp.Diff(wantPorts, svc.Spec.Ports); diff != "" {
		t.Errorf("Service ports (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}, c.Ports); diff != "" {
		t.Errorf("container ports (-want +got): the Service's targetPort names http:\n%s", diff)
	}

	// Service revisions may reach DNS and 10.20.0.0/16 on 443 only.
	dns, https := intstr.FromInt32(53), intstr.FromInt32(443)
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	checkNetworkPolicies(t, objs, podLabels, []networkingv1.NetworkPolicyEgressRule{
		{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}},
		},
		{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.20.0.0/16", Except: []string{"10.20.255.0/24"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &https}},
		},
	})
}

func TestChartRendersOneServerWithAGeneratedToken(t *testing.T) {
	objs := template(t, "-f", "testdata/single.yaml")
	want := []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount"}
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("kinds rendered (-want +got):\n%s", diff)
	}
	checkNamespaces(t, objs, "prod")
	if diff := cmp.Diff(wantRules, only[*rbacv1.Role](t, objs).Rules); diff != "" {
		t.Errorf("Role rules (-want +got):\n%s", diff)
	}

	secret := only[*corev1.Secret](t, objs)
	token := string(secret.Data["token"])
	if !regexp.MustCompile(`^[A-Za-z0-9]{48}$`).MatchString(token) {
		t.Errorf("generated token %q: want 48 letters and digits", token)
	}
	again := only[*corev1.Secret](t, template(t, "-f", "testdata/single.yaml"))
	if string(again.Data["token"]) == token {
		t.Errorf("two renders made the same token %q: want a random one (helm upgrade keeps an installed one, see the kube test)", token)
	}

	d := only[*appsv1.Deployment](t, objs)
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas %d; want 1", *d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != "stratus:0.1.0" {
		t.Errorf("image %q; want stratus:0.1.0 (the chart's appVersion)", c.Image)
	}
	wantArgs := []string{
		"server", "--sandbox=kube", "--listen=0.0.0.0:8080", "--namespace=prod",
		"--agent-image=stratus:0.1.0", "--data=/var/lib/stratus",
	}
	if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
		t.Errorf("server args (-want +got):\n%s", diff)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "STRATUS_KUBE_ADDRESS", ValueFrom: fieldRef("status.podIP")},
		{Name: "STRATUS_NODE_NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "STRATUS_POD_NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "STRATUS_POD_UID", ValueFrom: fieldRef("metadata.uid")},
		{Name: "STRATUS_ADVERTISE", Value: "http://$(POD_IP):8080"},
		{Name: "STRATUS_REGION", Value: "local"},
		{Name: "STRATUS_TOKEN", ValueFrom: secretRef(secret.Name, "token")},
	}
	if diff := cmp.Diff(wantEnv, c.Env); diff != "" {
		t.Errorf("server env (-want +got): no store, no NATS:\n%s", diff)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			t.Errorf("volume %s mounts Secret %s; want none without NATS credentials", v.Name, v.Secret.SecretName)
		}
	}
	checkData(t, pod, c, "")
	checkSecurity(t, pod, c)
	checkProbes(t, c)
	checkNetworkPolicies(t, objs, labels.Set(d.Spec.Template.Labels), nil)
}

func TestChartValuesToggleParts(t *testing.T) {
	objs := template(t, "-f", "testdata/single.yaml",
		"--set", "rbac.nodes=false", "--set", "podDisruptionBudget.enabled=false",
		"--set", "agentImage=agents/stratus:9", "--set", "nats.url=tls://nats:4222",
		"--set", "nats.credentials.existingSecret=nk", "--set", "nats.credentials.type=nkey",
		"--set", "nats.credentials.key=seed.nk", "--set", "token.existingSecret=mine",
		"--set", "serviceAccount.create=false", "--set", "serviceAccount.name=stratus-sa",
		"--set", "networkPolicy.enabled=false")
	want := []string{"Deployment", "Role", "RoleBinding", "Service"}
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("kinds rendered (-want +got): no node ClusterRole, no PDB, no ServiceAccount, no Secret, no NetworkPolicy:\n%s", diff)
	}
	d := only[*appsv1.Deployment](t, objs)
	c := d.Spec.Template.Spec.Containers[0]
	for _, arg := range []string{"--agent-image=agents/stratus:9", "--nats-nkey=/etc/stratus/nats/seed.nk"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %q: want %s", c.Args, arg)
		}
	}
	checkNATSCredentials(t, d.Spec.Template.Spec, c, "nk", "seed.nk", "/etc/stratus/nats")
	if sa := d.Spec.Template.Spec.ServiceAccountName; sa != "stratus-sa" {
		t.Errorf("serviceAccountName %q; want stratus-sa", sa)
	}
	rb := only[*rbacv1.RoleBinding](t, objs)
	if len(rb.Subjects) != 1 || rb.Subjects[0].Name != "stratus-sa" {
		t.Errorf("RoleBinding subjects %+v; want ServiceAccount stratus-sa", rb.Subjects)
	}
}

func TestChartLints(t *testing.T) {
	for _, values := range []string{"testdata/cluster.yaml", "testdata/single.yaml"} {
		out, err := helm(t, nil, "lint", "--strict", chartDir, "--namespace", "prod", "-f", values)
		if err != nil {
			t.Errorf("helm lint --strict -f %s: %v\n%s", values, err, out)
		}
	}
	// The defaults are one server on its embedded store and NATS.
	if out, err := helm(t, nil, "lint", "--strict", chartDir); err != nil {
		t.Errorf("helm lint --strict of the defaults: %v\n%s", err, out)
	}
	// Two need the store and NATS.
	out, err := helm(t, nil, "lint", "--strict", chartDir, "--set", "replicas=2")
	if err == nil || !strings.Contains(out, "/store/url") {
		t.Errorf("helm lint --strict with 2 replicas alone passed or did not name store.url; want it refused:\n%s\n%v", out, err)
	}
}

// TestChartRefusesBadValues checks that values.schema.json (or, for what
// JSON Schema cannot say, the templates) refuses bad values with a
// message that names the value to fix.
func TestChartRefusesBadValues(t *testing.T) {
	cluster := []string{"--set", "store.url=postgres://stratus@db/stratus", "--set", "nats.url=nats://nats:4222"}
	tests := []struct {
		name string
		args []string
		want []string // substrings of helm's error
	}{
		// Each names the two ways out: one replica, or the URLs.
		{"2 replicas without store and NATS", []string{"--set", "replicas=2"},
			[]string{"at '/replicas': maximum: got 2, want 1", "at '/store/url': minLength", "at '/nats/url': minLength"}},
		{"3 replicas without NATS", []string{"--set", "replicas=3", "--set", "store.url=postgres://stratus@db/stratus"},
			[]string{"at '/replicas': maximum: got 3, want 1", "at '/nats/url': minLength"}},
		{"store without NATS on 1 replica", []string{"--set", "replicas=1", "--set", "store.url=postgres://stratus@db/stratus"},
			[]string{"at '/store/url': maxLength", "at '/nats/url': minLength"}},
		{"replicas not a number", []string{"--set-string", "replicas=two"},
			[]string{"/replicas", "integer"}},
		{"no replicas", []string{"--set", "replicas=0"},
			[]string{"/replicas", "minimum"}},
		{"a misspelt value", append([]string{"--set", "replica=3"}, cluster...),
			[]string{"replica"}},
		{"store not PostgreSQL", []string{"--set", "replicas=1", "--set", "store.url=mysql://db/stratus", "--set", "nats.url=nats://nats:4222"},
			[]string{"/store/url", "mysql://db/stratus"}},
		{"NATS URL without a scheme", []string{"--set", "replicas=1", "--set", "nats.url=nats.example.com:4222"},
			[]string{"/nats/url"}},
		{"NATS credentials of an unknown type", append([]string{"--set", "nats.credentials.type=password"}, cluster...),
			[]string{"/nats/credentials/type", "creds", "nkey"}},
		{"region with a space", append([]string{"--set", "region=eu west"}, cluster...),
			[]string{"/region"}},
		{"root user", append([]string{"--set", "runAsUser=0"}, cluster...),
			[]string{"/runAsUser", "minimum"}},
		{"pull policy", append([]string{"--set", "image.pullPolicy=Sometimes"}, cluster...),
			[]string{"/image/pullPolicy", "Always", "IfNotPresent", "Never"}},
		{"service type", append([]string{"--set", "service.type=ExternalName"}, cluster...),
			[]string{"/service/type", "ClusterIP"}},
		{"secret name", append([]string{"--set", "token.existingSecret=My_Token"}, cluster...),
			[]string{"/token/existingSecret"}},
		{"extra args not flags", append([]string{"--set", "extraArgs[0]=rm"}, cluster...),
			[]string{"/extraArgs/0"}},
		{"service egress rule misspelt", append([]string{"--set-json", `networkPolicy.serviceEgress=[{"too":[{"ipBlock":{"cidr":"10.0.0.0/8"}}]}]`}, cluster...),
			[]string{"/networkPolicy/serviceEgress/0", "too"}},
		{"service egress not a list", append([]string{"--set", "networkPolicy.serviceEgress=all"}, cluster...),
			[]string{"/networkPolicy/serviceEgress"}},
		// JSON Schema cannot look across files; the template names it.
		{"no ServiceAccount to use", append([]string{"--set", "serviceAccount.create=false"}, cluster...),
			[]string{"serviceAccount.name: give the ServiceAccount to use when serviceAccount.create is false"}},
		// The templates refuse it too when the schema is skipped.
		{"2 replicas alone, schema skipped", []string{"--skip-schema-validation", "--set", "replicas=2"},
			[]string{"replicas > 1 needs store.url"}},
		{"NATS credentials without NATS, schema skipped", []string{"--skip-schema-validation", "--set", "replicas=1", "--set", "nats.credentials.existingSecret=nk"},
			[]string{"nats.credentials.existingSecret is for an external NATS server: give nats.url too"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := helm(t, nil, append([]string{"template", "demo", chartDir}, tt.args...)...)
			if err == nil {
				t.Fatalf("helm template %v rendered; want it refused:\n%s", tt.args, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("helm template %v: error does not name %q:\n%v", tt.args, w, err)
				}
			}
		})
	}
}

// The labels of the pods the servers make (internal/sandbox/pods and
// internal/services/kubedeploy), and of a pod that is neither.
var (
	functionPod = labels.Set{"app.kubernetes.io/managed-by": "stratus", "stratus.run/node": "demo-stratus-7d9f-x2v", "stratus.run/sandbox": "fn-hello-1"}
	servicePod  = labels.Set{"app.kubernetes.io/managed-by": "stratus", "stratus.run/service": "web", "stratus.run/revision": "3"}
	otherPod    = labels.Set{"app": "db"}
)

// checkNetworkPolicies checks the two NetworkPolicies exactly: function
// pods may be reached by the server pods (their labels serverPod) on the
// agent's port and reach only them and DNS; service pods may be reached
// by the server pods on any port and reach what serviceEgress lists (nil:
// anything, no Egress policy type). It also checks the selectors against
// the pods' labels, as the API server would match them.
func checkNetworkPolicies(t testing.TB, objs []runtime.Object, serverPod labels.Set, serviceEgress []networkingv1.NetworkPolicyEgressRule) {
	t.Helper()
	byName := map[string]*networkingv1.NetworkPolicy{}
	for _, o := range objs {
		if np, ok := o.(*networkingv1.NetworkPolicy); ok {
			byName[np.Name] = np
		}
	}
	if len(byName) != 2 || byName["demo-stratus-functions"] == nil || byName["demo-stratus-services"] == nil {
		t.Fatalf("NetworkPolicies %v; want demo-stratus-functions and demo-stratus-services", slices.Sorted(maps.Keys(byName)))
	}
	servers := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
		"app.kubernetes.io/name": "stratus", "app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "server",
	}}}}
	stratusPods := func(key string) metav1.LabelSelector {
		return metav1.LabelSelector{
			MatchLabels:      map[string]string{"app.kubernetes.io/managed-by": "stratus"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpExists}},
		}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	agent, dns := intstr.FromInt32(7450), intstr.FromInt32(53)
	wantFunctions := networkingv1.NetworkPolicySpec{
		PodSelector: stratusPods("stratus.run/sandbox"),
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: servers, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &agent}},
		}},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			// Any TCP port of the servers: the agent Host and Runtime APIs.
			{To: servers, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp}}},
			{
				To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
			},
		},
	}
	functions := byName["demo-stratus-functions"]
	if diff := cmp.Diff(wantFunctions, functions.Spec); diff != "" {
		t.Errorf("function pods' NetworkPolicy (-want +got):\n%s", diff)
	}
	wantServices := networkingv1.NetworkPolicySpec{
		PodSelector: stratusPods("stratus.run/service"),
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		// Any port: the revision's own.
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: servers}},
	}
	if serviceEgress != nil {
		wantServices.PolicyTypes = append(wantServices.PolicyTypes, networkingv1.PolicyTypeEgress)
		wantServices.Egress = serviceEgress
	}
	services := byName["demo-stratus-services"]
	if diff := cmp.Diff(wantServices, services.Spec); diff != "" {
		t.Errorf("service pods' NetworkPolicy (-want +got):\n%s", diff)
	}

	matches := func(s metav1.LabelSelector, l labels.Set) bool {
		t.Helper()
		sel, err := metav1.LabelSelectorAsSelector(&s)
		if err != nil {
			t.Fatalf("selector %v: %v", s, err)
		}
		return sel.Matches(l)
	}
	for _, c := range []struct {
		policy *networkingv1.NetworkPolicy
		pod    labels.Set
		want   bool
	}{
		{functions, functionPod, true},
		{functions, servicePod, false},
		{functions, serverPod, false},
		{functions, otherPod, false},
		{services, servicePod, true},
		{services, functionPod, false},
		{services, serverPod, false},
		{services, otherPod, false},
	} {
		if got := matches(c.policy.Spec.PodSelector, c.pod); got != c.want {
			t.Errorf("NetworkPolicy %s selects pod %v: %v; want %v", c.policy.Name, c.pod, got, c.want)
		}
	}
	for _, np := range []*networkingv1.NetworkPolicy{functions, services} {
		if p := np.Spec.Ingress[0].From[0].PodSelector; p == nil || !matches(*p, serverPod) || matches(*p, functionPod) {
			t.Errorf("NetworkPolicy %s lets in pods %v; want the server's pods %v only", np.Name, p, serverPod)
		}
	}
}

// checkNamespaces checks that every object but the node ClusterRole and
// its binding is in namespace ns, and that those two are the only
// cluster-scoped objects.
func checkNamespaces(t testing.TB, objs []runtime.Object, ns string) {
	t.Helper()
	for _, o := range objs {
		m, err := metaOf(o)
		if err != nil {
			t.Fatal(err)
		}
		switch o.(type) {
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
			if m.GetNamespace() != "" {
				t.Errorf("%T %s has namespace %q; cluster-scoped", o, m.GetName(), m.GetNamespace())
			}
		default:
			if m.GetNamespace() != ns {
				t.Errorf("%T %s is in namespace %q; want the release's, %q", o, m.GetName(), m.GetNamespace(), ns)
			}
		}
		if m.GetLabels()["app.kubernetes.io/instance"] != "demo" {
			t.Errorf("%T %s has labels %v; want app.kubernetes.io/instance=demo", o, m.GetName(), m.GetLabels())
		}
	}
}

// checkSecurity checks the server pod's and container's security context.
func checkSecurity(t testing.TB, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if psc != nil && (psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
		t.Errorf("pod seccompProfile %+v; want RuntimeDefault", psc.SeccompProfile)
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("server container has no securityContext")
	}
	f := func(p *bool) bool { return p != nil && *p }
	if !f(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Privileged == nil || *sc.Privileged || !f(sc.RunAsNonRoot) {
		t.Errorf("container securityContext %+v: want a read-only root, no privilege escalation, not privileged, non-root", sc)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities %+v; want drop ALL, add none", sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container seccompProfile %+v; want RuntimeDefault", sc.SeccompProfile)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a host path", v.Name)
		}
	}
}

// checkData checks that the data dir is a writable emptyDir (the root is
// read-only) of sizeLimit ("" none).
func checkData(t testing.TB, pod corev1.PodSpec, c corev1.Container, sizeLimit string) {
	t.Helper()
	mount := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/var/lib/stratus" })
	if mount < 0 || c.VolumeMounts[mount].ReadOnly {
		t.Fatalf("mounts %+v: want a writable volume at the data dir /var/lib/stratus", c.VolumeMounts)
	}
	vol := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[mount].Name })
	if vol < 0 || pod.Volumes[vol].EmptyDir == nil {
		t.Fatalf("volumes %+v: want the data dir an emptyDir", pod.Volumes)
	}
	got := ""
	if l := pod.Volumes[vol].EmptyDir.SizeLimit; l != nil {
		got = l.String()
	}
	if got != sizeLimit {
		t.Errorf("data emptyDir sizeLimit %q; want %q", got, sizeLimit)
	}
}

// checkProbes checks the probes on the server's health endpoints.
func checkProbes(t testing.TB, c corev1.Container) {
	t.Helper()
	for name, p := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		"readiness": {c.ReadinessProbe, "/readyz"},
		"liveness":  {c.LivenessProbe, "/healthz"},
		"startup":   {c.StartupProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s probe %+v; want GET %s on port http", name, p.probe, p.path)
		}
	}
}

// checkNATSCredentials checks that Secret secret's key is mounted
// read-only at dir.
func checkNATSCredentials(t testing.TB, pod corev1.PodSpec, c corev1.Container, secret, key, dir string) {
	t.Helper()
	vol := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == secret })
	if vol < 0 {
		t.Fatalf("volumes %+v: want Secret %s", pod.Volumes, secret)
	}
	s := pod.Volumes[vol].Secret
	if len(s.Items) != 1 || s.Items[0].Key != key || s.Items[0].Path != key {
		t.Errorf("Secret volume items %+v; want only %s", s.Items, key)
	}
	if s.DefaultMode == nil || *s.DefaultMode&0o007 != 0 {
		t.Errorf("Secret volume mode %v; want none for others", s.DefaultMode)
	}
	mount := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == pod.Volumes[vol].Name })
	if mount < 0 || c.VolumeMounts[mount].MountPath != dir || !c.VolumeMounts[mount].ReadOnly {
		t.Errorf("mounts %+v: want %s read-only at %s", c.VolumeMounts, pod.Volumes[vol].Name, dir)
	}
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func secretRef(name, key string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key,
	}}
}

// metaOf returns o's object metadata.
func metaOf(o runtime.Object) (metav1.Object, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, errors.New("a rendered object has no metadata")
	}
	return m, nil
}
