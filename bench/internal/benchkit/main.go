package benchkit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main runs bench under a context that SIGINT and SIGTERM cancel, and
// returns the program's exit code: 1 when bench fails (its error written
// to stderr after prog), else 0.
func Main(prog string, bench func(ctx context.Context) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx); err != nil {
		fmt.Fprintln(os.Stderr, prog+":", err)
		return 1
	}
	return 0
}

// WriteJSON writes v, indented, to the file path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// WorkDir makes a scratch folder for a run, and returns it with the func
// that removes it at the end, unless keep (then it says where it is).
func WorkDir(prefix string, keep bool) (string, func(), error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	if keep {
		Logf("work dir %s (kept)", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
