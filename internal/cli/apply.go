package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/knative"
)

func (e *env) applyCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Create or update a service from a Knative Service manifest (serving.knative.dev/v1, YAML or JSON)",
		Long: `Create or update a service from a Knative Service manifest (serving.knative.dev/v1, YAML
or JSON; -f - reads it from stdin). A changed image or configuration makes a new revision;
re-applying an unchanged manifest makes none. spec.traffic sets the split between revisions
(web-00001, web-00002, ... or latestRevision: true); without it the latest revision takes all
requests, as in Knative. A field Stratus does not support is refused by name, and then nothing
is sent. It prints service/NAME created, configured or unchanged; -o json or -o yaml print the
service instead (yaml as a Knative Service with its status, as service get -o yaml does).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageErr("-f FILE is required (-f - reads stdin)")
			}
			label := file
			if file == "-" {
				label = "stdin"
			}
			data, err := readManifest(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			m, err := knative.Decode(data)
			if err != nil {
				return usageErr("%s: %v", label, err)
			}
			c, err := e.yamlClient()
			if err != nil {
				return err
			}
			svc, result, err := apply(cmd.Context(), c, m)
			if err != nil {
				return err
			}
			switch e.output {
			case "json":
				return e.json(svc)
			case "yaml":
				return e.writeYAML(svc)
			}
			fmt.Fprintf(e.stdout, "service/%s %s\n", m.Name, result)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the manifest's file; - reads stdin")
	return cmd
}

// readManifest reads file, or r when file is "-", up to
// knative.MaxManifestBytes (Decode refuses more).
func readManifest(r io.Reader, file string) ([]byte, error) {
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, knative.MaxManifestBytes+1))
	if err != nil {
		return nil, usageErr("read %s: %v", file, err)
	}
	return data, nil
}

// apply deploys m: the revision (DeployService makes none when nothing
// changed), then the traffic split when it differs from the service's.
// It reports created, configured or unchanged, as kubectl does.
func apply(ctx context.Context, c *client.Client, m *knative.Manifest) (*v1.Service, string, error) {
	prev, err := c.Service(ctx, m.Name)
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Code == v1.CodeNotFound:
		prev = nil
	case err != nil:
		return nil, "", err
	}
	if err := checkRevisions(m, prev); err != nil {
		return nil, "", err
	}
	svc, err := c.DeployService(ctx, m.Name, m.Config)
	if err != nil {
		return nil, "", err
	}
	result := "unchanged"
	switch {
	case prev == nil:
		result = "created"
	case svc.Revision != prev.Revision:
		result = "configured"
	}
	if !slices.Equal(knative.SpecTraffic(svc.Traffic), m.Traffic) {
		if svc, err = c.SetTraffic(ctx, m.Name, m.Traffic); err != nil {
			return nil, "", fmt.Errorf("set the traffic of service %s (its configuration is applied): %w", m.Name, err)
		}
		if result == "unchanged" {
			result = "configured"
		}
	}
	return svc, result, nil
}

// checkRevisions refuses, before anything is sent, a split naming a
// revision past the one this apply may make.
func checkRevisions(m *knative.Manifest, prev *v1.Service) error {
	next := 1
	if prev != nil {
		next = prev.Revision + 1
	}
	for _, t := range m.Traffic {
		if t.Latest || t.Revision <= next {
			continue
		}
		latest := "the service does not exist yet"
		if prev != nil {
			latest = "the latest is " + prev.RevisionName
		}
		return fmt.Errorf("spec.traffic: revision %s: %w (%s)", knative.RevisionName(m.Name, t.Revision), stratus.ErrNotFound, latest)
	}
	return nil
}

// yamlClient is client for the commands that write YAML too (-o yaml).
func (e *env) yamlClient() (*client.Client, error) {
	if e.output != "yaml" {
		return e.client()
	}
	e.output = "table"
	defer func() { e.output = "yaml" }()
	return e.client()
}

// writeYAML prints svc as a Knative Service with its status.
func (e *env) writeYAML(svc *v1.Service) error {
	b, err := knative.Encode(svc)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(b)
	return err
}

// serviceYAML is "service get NAME -o yaml".
func (e *env) serviceYAML(ctx context.Context, name string) error {
	c, err := e.yamlClient()
	if err != nil {
		return err
	}
	svc, err := c.Service(ctx, name)
	if err != nil {
		return err
	}
	return e.writeYAML(svc)
}
