package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
)

func (e *env) imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import, pull, list and remove container images",
	}
	cmd.AddCommand(e.imageImportCmd(), e.imagePullCmd(), e.imageLsCmd(), e.imageRmCmd())
	return cmd
}

// printImage prints what import and pull stored.
func (e *env) printImage(verb string, img *v1.Image) error {
	if e.output == "json" {
		return e.json(img)
	}
	fmt.Fprintf(e.stdout, "%s %s %s (%s)\n", verb, img.Ref, img.Digest, humanBytes(img.Size))
	return nil
}

func (e *env) imageImportCmd() *cobra.Command {
	var ref string
	cmd := &cobra.Command{
		Use:   "import FILE [--ref NAME]",
		Short: "Import a docker save tarball or an OCI image layout (folder or tar)",
		Long: `Import an image into the server's image store.

FILE is a "docker save" tarball (plain or gzipped), an OCI image layout
tar, or an OCI image layout folder (sent as a tar). --ref names the image;
without it the archive's own name is used (docker's RepoTags or the
layout's org.opencontainers.image.ref.name annotation).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			bar := e.progressBar("uploading", "importing")
			img, err := c.ImportImage(cmd.Context(), args[0], ref, bar.callback())
			bar.close()
			if err != nil {
				return err
			}
			return e.printImage("imported", img)
		},
	}
	cmd.Flags().StringVar(&ref, "ref", "", "name of the image in the store (default: the archive's name)")
	return cmd
}

func (e *env) imagePullCmd() *cobra.Command {
	var spec v1.ImagePull
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "pull REF [--username U --password-stdin] [--insecure]",
		Short: "Pull an image from an OCI registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Ref = args[0]
			if passwordStdin {
				if spec.Username == "" {
					return usageErr("--password-stdin needs --username")
				}
				pw, err := readPassword(cmd.InOrStdin())
				if err != nil {
					return err
				}
				spec.Password = pw
			} else if spec.Username != "" {
				return usageErr("--username needs --password-stdin")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			bar := e.progressBar("pulling", "storing")
			img, err := c.PullImage(cmd.Context(), spec, bar.callback())
			bar.close()
			if err != nil {
				return err
			}
			return e.printImage("pulled", img)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&spec.Username, "username", "", "registry user name (basic auth)")
	fl.BoolVar(&passwordStdin, "password-stdin", false, "read the registry password from stdin")
	fl.BoolVar(&spec.Insecure, "insecure", false, "reach the registry over plain http")
	return cmd
}

// progressBar shows on stderr how far an upload or a pull is. It is nil,
// and does nothing, unless stderr is a terminal and the output a table:
// scripts and -o json see what they always saw.
type progressBar struct {
	w           io.Writer
	desc, after string                   // shown while the bytes come, and once they are all there
	bar         *progressbar.ProgressBar // made at the first report, which brings the total
}

func (e *env) progressBar(desc, after string) *progressBar {
	f, ok := e.stderr.(interface{ Fd() uintptr })
	if e.output == "json" || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progressBar{w: e.stderr, desc: desc, after: after}
}

// callback is the client's progress function: nil without a bar, so that
// the client does not ask for progress.
func (p *progressBar) callback() func(done, total int64) {
	if p == nil {
		return nil
	}
	return p.update
}

// update shows done bytes of total (a spinner when total is unknown).
func (p *progressBar) update(done, total int64) {
	if p.bar == nil {
		max := total
		if max <= 0 {
			max = -1
		}
		p.bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(65*time.Millisecond),
			progressbar.OptionSpinnerType(14),
		)
	}
	_ = p.bar.Set64(done)
	if total > 0 && done >= total {
		p.bar.Describe(p.after)
	}
}

// close erases the bar, once the client has returned (and so no longer
// calls update).
func (p *progressBar) close() {
	if p == nil || p.bar == nil {
		return
	}
	_ = p.bar.Exit()
	_ = p.bar.Clear()
}

// readPassword reads the first line of r.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usageErr("--password-stdin: stdin is empty")
	}
	return pw, nil
}

func (e *env) imageLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List stored images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			imgs, err := c.ListImages(cmd.Context())
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(imgs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REF\tDIGEST\tSIZE\tLAYERS\tCREATED")
			for _, img := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", img.Ref, img.Digest, humanBytes(img.Size), len(img.Layers),
					img.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func (e *env) imageRmCmd() *cobra.Command {
	cmd := e.removeCmd("Remove an image (by ref, or every ref of a sha256: digest)", "image ", func(ctx context.Context, c *client.Client, ref string) error {
		return c.RemoveImage(ctx, ref)
	})
	cmd.Use = "rm REF"
	return cmd
}

// humanBytes formats n as "512 B", "1.5 MB".
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
