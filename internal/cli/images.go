package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
			img, err := c.ImportImage(cmd.Context(), args[0], ref)
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
			img, err := c.PullImage(cmd.Context(), spec)
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
