package cli

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus/internal/agent"
)

// agentCmd is `stratus agent`, the entrypoint of a function's pod on
// Kubernetes (hidden: the kube sandbox driver starts it, not people).
// With --install DIR it only copies itself to DIR/stratus: the init
// container of a pod whose sandbox runs another image does that, into a
// volume the sandbox's container runs the agent from.
func (e *env) agentCmd() *cobra.Command {
	var installDir string
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
			if code := agent.Run(cmd.Context(), e.environ, log); code != ExitOK {
				return &exitError{code: code, err: agentExit{}}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&installDir, "install", "", "copy this program to `DIR`/stratus and exit")
	return cmd
}

// agentExit carries the agent's exit code through cobra without a
// message (the agent has logged why).
type agentExit struct{}

func (agentExit) Error() string { return "" }
