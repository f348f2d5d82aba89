.PHONY: run build image test test-kube test-node bench console

build:
	go build -o bin/stratus ./cmd/stratus

# The Stratus image (a static stratus at /stratus, and a layer per runtime
# with this machine's python3 and node as the runc driver's roots hold
# them; the server and the function pods of --sandbox kube run it) as a
# docker-archive tar, for `ctr images import`, `docker load` or
# `crane push`.
image:
	CGO_ENABLED=0 go build -trimpath -o bin/stratus-static ./cmd/stratus
	go run ./internal/agentimage/cmd bin/stratus-static bin/stratus-image.tar

# Build and start the server on its embedded defaults (127.0.0.1:8080, ./.stratus).
run: build
	./bin/stratus server

# Every test; installs missing system packages first (as root).
test:
	./scripts/test

# The tests that start a Kubernetes cluster of real components with KWOK
# nodes (built from source once, cached outside the clone), alone; "make
# test" runs them too, beside the rest.
test-kube:
	go vet -tags kube ./internal/kubetest/ ./internal/sandbox/pods/ ./internal/kube/... ./internal/services/... ./deploy/helm/
	go test -tags kube -race -timeout 120m -count=1 ./internal/kubetest/ ./internal/sandbox/pods/ ./internal/kube/... ./internal/services/... ./deploy/helm/

# The tests that also start one real Kubernetes node on this machine
# (kubelet, Debian's containerd, runc and CNI plugins; as root; installs
# the missing packages first): a Deployment runs and rolls, the sandbox
# suite runs against the kube driver, and a server with --sandbox kube runs
# functions and services in pods of the Stratus image.
test-node:
	./scripts/node-packages
	go vet -tags kube,node ./internal/kubetest/ ./internal/sandbox/pods/ ./e2e/
	go test -tags kube,node -race -timeout 120m -count=1 -run 'TestRealNode' ./internal/kubetest/
	go test -tags kube,node -race -timeout 60m -count=1 -run 'TestSuiteOnNode' ./internal/sandbox/pods/
	go test -tags kube,node -timeout 60m -count=1 -run 'TestKubeNode' ./e2e/

# Benchmarks (figures in bench/README.md and the README.md beside each program).
bench:
	go run ./bench
	go run ./bench/events
	go run ./bench/containers
	go run ./bench/lambdaapi

# Rebuild the console's third-party files (internal/console/assets/vendor)
# from the npm registry with web/package-lock.json; the output is committed.
console:
	./scripts/console-vendor
