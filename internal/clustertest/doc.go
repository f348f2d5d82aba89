// Package clustertest starts the distributed engines a Stratus cluster
// runs on, as real processes on this machine, for tests: PostgreSQL
// (StartPostgres: initdb into a temp dir, postgres on a free loopback
// port; NewPostgres for one that a TestMain shares and closes) and a NATS
// cluster (StartNATSCluster: n nats-server processes with cluster routes
// and JetStream, on loopback ports). Each is stopped by the test's Cleanup
// and leaves no process and no file behind; each can be
// stopped and started again mid-test (Postgres.Stop and Start,
// NATSCluster.Kill and Start) with its ports and data kept, to test what
// Stratus does while an engine, or one node of it, is gone.
//
// The binaries come from this machine: PostgreSQL from the distribution's
// packages (initdb on PATH or under /usr/lib/postgresql), nats-server
// built from the exact module version in go.mod by the go command and
// cached outside the clone by version
// (${XDG_CACHE_HOME:-~/.cache}/stratus-tools/nats-server-VERSION-GOVERSION/),
// built once under a file lock so that test binaries running at once do
// not race. A missing binary or toolchain skips the test, and fails it
// when CI=true. That build (BuildGoTool) and FreePorts serve other
// harnesses too: internal/kubetest's Kubernetes components and the
// third-party servers of e2e's conformance tests.
//
// The harnesses wait on conditions (a server accepting, a JetStream meta
// leader elected), never a fixed time.
package clustertest
