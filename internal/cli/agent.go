package cli

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus/internal/agent"
)

// agentCmd is `stratus agent`, the entrypoint of a function's pod on
// Kubernetes (hidden: the kube sandbox driver starts it, not people).
func (e *env) agentCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "agent",
		Short:  "Run a function's program in a Kubernetes pod (the pod's entrypoint)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(e.stderr, nil))
			if code := agent.Run(cmd.Context(), e.environ, log); code != ExitOK {
				return &exitError{code: code, err: agentExit{}}
			}
			return nil
		},
	}
}

// agentExit carries the agent's exit code through cobra without a
// message (the agent has logged why).
type agentExit struct{}

func (agentExit) Error() string { return "" }
