package functions

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratus-run/stratus"
)

// sizeText writes a size limit as people read it: "50 MB", "64 KB", or
// bytes when it is not a whole number of either.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// checkTopics refuses topic destinations that name no topic: a deploy
// says where its records go, so a typo is an error now rather than records
// dropped later. (A topic deleted after the deploy is not checked again:
// records for it are dropped with a log line.)
func (s *Service) checkTopics(ctx context.Context, cfg stratus.FunctionConfig) error {
	for _, d := range []struct{ flag, dest string }{{"on-success", cfg.OnSuccess}, {"on-failure", cfg.OnFailure}} {
		if kind, target, err := stratus.ParseDestination(d.dest); err == nil && kind == stratus.DestTopic {
			if _, err := s.st.GetTopic(ctx, target); err != nil {
				return fmt.Errorf("%s destination: %w (create it first: stratus topic create %s)", d.flag, err, target)
			}
		}
	}
	return nil
}

// checkLoop refuses destinations that lead back to function name: its
// events would feed themselves forever.
func (s *Service) checkLoop(name string, cfg stratus.FunctionConfig) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next := func(fn string, c stratus.FunctionConfig) []string {
		var out []string
		for _, d := range []string{c.OnSuccess, c.OnFailure} {
			if kind, target, err := stratus.ParseDestination(d); err == nil && kind == stratus.DestFunction {
				// Any version of a function counts as the function: a
				// qualified destination may lead back to it too.
				fn, _, _ := strings.Cut(target, ":")
				out = append(out, fn)
			}
		}
		return out
	}
	seen := map[string]bool{}
	path := []string{name}
	var walk func(fn string, c stratus.FunctionConfig) error
	walk = func(fn string, c stratus.FunctionConfig) error {
		for _, t := range next(fn, c) {
			if t == name {
				return fmt.Errorf("destination loop: %s feeds itself (%s -> %s): %w", name, strings.Join(path, " -> "), name, stratus.ErrInvalid)
			}
			if seen[t] {
				continue
			}
			seen[t] = true
			if v, ok := s.heads[t]; ok {
				path = append(path, t)
				if err := walk(t, v.Config); err != nil {
					return err
				}
				path = path[:len(path)-1]
			}
		}
		return nil
	}
	return walk(name, cfg)
}

// checkCode checks that the code in dir has what cfg's runtime runs.
func checkCode(dir string, cfg stratus.FunctionConfig) error {
	switch {
	case stratus.IsProvided(cfg.Runtime):
		p := filepath.Join(dir, "bootstrap")
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("runtime %s needs an executable file named bootstrap at the top of the code, and there is none: %w", cfg.Runtime, stratus.ErrInvalid)
		}
		if fi.Mode()&0o111 == 0 {
			return fmt.Errorf("bootstrap is not executable (chmod +x bootstrap): %w", stratus.ErrInvalid)
		}
	case cfg.Runtime == stratus.RuntimePython3:
		mod := cfg.Handler[:strings.LastIndex(cfg.Handler, ".")]
		base := filepath.Join(dir, filepath.FromSlash(strings.ReplaceAll(mod, ".", "/")))
		if !exists(base+".py") && !exists(filepath.Join(base, "__init__.py")) && !exists(filepath.Join(dir, mod+".py")) {
			return fmt.Errorf("handler %q: no module %s.py in the code: %w", cfg.Handler, mod, stratus.ErrInvalid)
		}
	case cfg.Runtime == stratus.RuntimeNodejs:
		file := cfg.Handler[:strings.LastIndex(cfg.Handler, ".")]
		base := filepath.Join(dir, filepath.FromSlash(file))
		if !exists(base+".js") && !exists(base+".mjs") && !exists(base+".cjs") {
			return fmt.Errorf("handler %q: no file %s.js, .mjs or .cjs in the code: %w", cfg.Handler, file, stratus.ErrInvalid)
		}
	}
	return nil
}

func exists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
