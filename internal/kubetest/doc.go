// Package kubetest starts a Kubernetes cluster of real components on this
// machine, for tests: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler as processes on free loopback ports with their data in a
// temp dir, and KWOK (sigs.k8s.io/kwok) keeping fake nodes Ready and
// playing their kubelet: the pods the scheduler puts on them become
// Running and Ready (with an IP) without running anything. Deployments
// become ReplicaSets and pods, scale, and are placed by node affinity as
// on a real cluster. Start returns once the cluster answers; Stop, or t's
// Cleanup, kills every process and frees its ports.
//
// StartAPIServer starts etcd and kube-apiserver alone, for tests of what
// the API server does by itself. StartWithNode adds one real node to
// Start's cluster: Debian's containerd and runc, a CNI bridge and the
// kubelet (built like the control plane), running real pods of images
// that ImportImage stores in its containerd (tags kube,node: make
// test-node, as root).
//
// The API server serves TLS with certificates made at start (crypto/x509,
// ECDSA) and authenticates client certificates of its CA; the admin user
// is in group system:masters, RBAC authorizes. The kubeconfig that
// Cluster.Kubeconfig names works with kubectl.
//
// The programs are built from source, at versions pinned in nested
// modules kept out of Stratus's go.mod (tools/kubernetes: k8s.io/kubernetes,
// whose kubelet is built apart, only for a real node,
// with its k8s.io/* staging modules replaced by the published versions of
// the same release; tools/etcd: go.etcd.io/etcd/server/v3; tools/kwok:
// sigs.k8s.io/kwok), once per version and Go toolchain, into
// ${XDG_CACHE_HOME:-~/.cache}/stratus-tools/NAME-VERSION-GOVERSION/, under
// a file lock so that test binaries running at once share one build
// (clustertest.BuildGoTool). The first build takes many minutes, the
// three Kubernetes programs most (figures in tools/README.md), so the
// tests that start a cluster carry the build tag "kube": `make test` runs
// them (go test -tags kube, with a -timeout above the build) beside the
// other tests, whose waits the build overlaps, and `make test-kube` runs
// them alone. A missing go command skips them, or fails them when
// CI=true; a failed build always fails them.
package kubetest
