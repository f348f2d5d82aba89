package cli

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus/internal/agent"
)

// agentCmd is `stratus agent`, the entrypoint of a function's pod on
// Kubernetes (hidden: the kube sandbox driver starts it, not people).
// With --install DIR it only copies itself to DIR/stratus: the init
// container of a pod whose sandbox runs another image does that, into a
// volume the sandbox's container runs the agent from. With --stage DIR
// it only unpacks the sandbox's mounts into DIR/0, DIR/1, ...: the init
// container of a pod whose sandbox has mounts does that, into volumes the
// sandbox's container has read-only.
func (e *env) agentCmd() *cobra.Command {
	var installDir, stageDir string
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "Run a function's program in a Kubernetes pod (the pod's entrypoint)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if installDir != "" {
				return agent.Install(installDir)
			}
			log := slog.New(slog.NewTextHandler(e.stderr, nil))
			run := agent.Run
			if stageDir != "" {
				run = func(ctx context.Context, environ []string, log *slog.Logger) int {
					return agent.Stage(ctx, environ, stageDir, log)
				}
			}
			if code := run(cmd.Context(), e.environ, log); code != ExitOK {
				return &exitError{code: code, err: agentExit{}}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&installDir, "install", "", "copy this program to `DIR`/stratus and exit")
	cmd.Flags().StringVar(&stageDir, "stage", "", "unpack the sandbox's mounts into `DIR`/0, DIR/1, ... and exit")
	cmd.Flags().MarkHidden("stage")
	cmd.MarkFlagsMutuallyExclusive("install", "stage")
	return cmd
}

// agentExit carries the agent's exit code through cobra without a
// message (the agent has logged why).
type agentExit struct{}

func (agentExit) Error() string { return "" }
