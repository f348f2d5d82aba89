.PHONY: run build test test-kube bench console

build:
	go build -o bin/stratus ./cmd/stratus

# Build and start the server on its embedded defaults (127.0.0.1:8080, ./.stratus).
run: build
	./bin/stratus server

# Every test; installs missing system packages first (as root).
test:
	./scripts/test

# The tests that start a Kubernetes cluster of real components (built from
# source once, cached outside the clone: the first build takes most of an
# hour on 2 cores, so they are not part of "make test").
test-kube:
	go vet -tags kube ./internal/kubetest/
	go test -tags kube -race -timeout 120m -count=1 ./internal/kubetest/

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
