// Command cmd writes the Stratus image of a static stratus binary as a
// docker-archive tar (make image), with the layers of the runtimes named
// by -runtimes (python3 and nodejs, from the host's interpreters; "none"
// for the binary alone):
//
//	go run ./internal/agentimage/cmd [-tag stratus:dev] [-runtimes python3,nodejs|none] BINARY OUT.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stratus-run/stratus/internal/agentimage"
)

func main() {
	tag := flag.String("tag", "stratus:dev", "the image's reference in the archive")
	rts := flag.String("runtimes", strings.Join(agentimage.Runtimes, ","), `the runtimes whose layers the image has, comma-separated, or "none"`)
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: cmd [-tag REF] [-runtimes python3,nodejs|none] BINARY OUT.tar")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := write(flag.Arg(0), flag.Arg(1), *tag, runtimeList(*rts)); err != nil {
		fmt.Fprintln(os.Stderr, "stratus image:", err)
		os.Exit(1)
	}
}

// runtimeList is the runtimes of -runtimes: none for "none" or "".
func runtimeList(s string) []string {
	var out []string
	for r := range strings.SplitSeq(s, ",") {
		if r = strings.TrimSpace(r); r != "" && r != "none" {
			out = append(out, r)
		}
	}
	return out
}

func write(binary, out, ref string, rts []string) error {
	t, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("-tag %q: %w", ref, err)
	}
	img, err := agentimage.Build(binary, t.TagStr(), rts...)
	if err != nil {
		return fmt.Errorf("%w (-runtimes chooses the runtimes' layers; none leaves them out)", err)
	}
	if err := tarball.WriteToFile(out, t, img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s, %.1f MB, runtimes %s\n", out, t.String(), d, float64(fi.Size())/1e6, orNone(rts))
	return nil
}

func orNone(rts []string) string {
	if len(rts) == 0 {
		return "none"
	}
	return strings.Join(rts, ",")
}
