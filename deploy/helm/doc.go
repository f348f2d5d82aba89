// Package helm holds the tests of the Helm chart in stratus/, which
// installs Stratus on a Kubernetes cluster: they build the real helm
// (pinned in internal/kubetest/tools/helm), lint and render the chart with
// several values files, decode every rendered object with client-go's
// scheme and check what a reviewer would; under the build tag kube they
// apply it to internal/kubetest's cluster. The package has no code.
package helm
