package server

import (
	"context"
	"sync/atomic"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// countingDriver counts the sandboxes a driver prepares and starts, and
// those it fails to, for /metrics. A call cut short by its ctx (the server
// stopping, a caller leaving) is not a failure of the driver.
type countingDriver struct {
	sandbox.Driver
	starts, failures     atomic.Int64
	prepares, prepFailed atomic.Int64
}

// Start implements sandbox.Driver.
func (d *countingDriver) Start(ctx context.Context, spec sandbox.Spec) error {
	err := d.Driver.Start(ctx, spec)
	count(ctx, err, &d.starts, &d.failures)
	return err
}

// Prepare implements sandbox.Driver.
func (d *countingDriver) Prepare(ctx context.Context, spec sandbox.Spec) error {
	err := d.Driver.Prepare(ctx, spec)
	count(ctx, err, &d.prepares, &d.prepFailed)
	return err
}

func count(ctx context.Context, err error, ok, failed *atomic.Int64) {
	switch {
	case err == nil:
		ok.Add(1)
	case ctx.Err() == nil:
		failed.Add(1)
	}
}

// cpuReader is a driver's cheap read of a sandbox's CPU time.
type cpuReader interface {
	CPUNanos(ctx context.Context, id string) (int64, error)
}

// countingCPUDriver is a countingDriver of a driver with a cheap CPU
// read, which it keeps visible to the pools and services.
type countingCPUDriver struct {
	*countingDriver
	cpu cpuReader
}

// CPUNanos implements cpuReader.
func (d countingCPUDriver) CPUNanos(ctx context.Context, id string) (int64, error) {
	return d.cpu.CPUNanos(ctx, id)
}

// counted wraps d so that its starts are counted, keeping its CPU read.
func counted(d sandbox.Driver) (sandbox.Driver, *countingDriver) {
	c := &countingDriver{Driver: d}
	if r, ok := d.(cpuReader); ok {
		return countingCPUDriver{countingDriver: c, cpu: r}, c
	}
	return c, c
}
