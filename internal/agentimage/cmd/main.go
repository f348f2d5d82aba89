// Command cmd writes the Stratus image of a static stratus binary as a
// docker-archive tar (make image):
//
//	go run ./internal/agentimage/cmd [-tag stratus:dev] BINARY OUT.tar
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stratus-run/stratus/internal/agentimage"
)

func main() {
	tag := flag.String("tag", "stratus:dev", "the image's reference in the archive")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: cmd [-tag REF] BINARY OUT.tar")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := write(flag.Arg(0), flag.Arg(1), *tag); err != nil {
		fmt.Fprintln(os.Stderr, "stratus image:", err)
		os.Exit(1)
	}
}

func write(binary, out, ref string) error {
	t, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("-tag %q: %w", ref, err)
	}
	img, err := agentimage.Build(binary, t.TagStr())
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, t, img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s\n", out, t.String(), d)
	return nil
}
