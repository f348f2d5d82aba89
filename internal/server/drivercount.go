package server

import (
	"context"
	"sync/atomic"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// countingDriver counts the sandboxes a driver starts and fails to start,
// for /metrics.
type countingDriver struct {
	sandbox.Driver
	starts, failures atomic.Int64
}

// Start implements sandbox.Driver.
func (d *countingDriver) Start(ctx context.Context, spec sandbox.Spec) error {
	err := d.Driver.Start(ctx, spec)
	if err != nil {
		d.failures.Add(1)
	} else {
		d.starts.Add(1)
	}
	return err
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
