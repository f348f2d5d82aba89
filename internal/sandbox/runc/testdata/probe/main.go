// Command probe is sandboxtest.Probe as a program of its own, built
// static by the tests, for a root filesystem without a libc.
package main

import (
	"os"

	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

func main() { os.Exit(sandboxtest.Probe(os.Stdout, os.Args[1:])) }
