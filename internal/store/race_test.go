//go:build race

package store

// raceEnabled reports whether the race detector is on; it slows SQLite,
// compiled from C to Go, by one or two orders of magnitude.
const raceEnabled = true
