package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/stratus-run/stratus/api/v1"
)

func (e *env) nodesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the servers of the cluster: state, region, last heartbeat, instances, replicas",
		Long: `List the servers of the cluster, one row per node. A node is one
"stratus server" process: several of them on one PostgreSQL store (--store
postgres://...) and one NATS cluster make a cluster, each named by its
--node-name; a server on SQLite is a cluster of one node.

Each node heartbeats into the store every 2 s with its state, its instances
and replicas. A node whose last heartbeat is more than 10 s old is dead: its
STATE shows "dead" (-o json keeps the state it last reported, with "alive":
false), its INSTANCES and REPLICAS show "-" (-o json keeps its last counts),
and the functions and services it owned move to the live nodes. Otherwise
STATE is what the node says of itself: "ready", "unready: REASON" or
"stopping".

HEARTBEAT is the age of the node's last heartbeat, as the answering server
measures it. The answering server's own row has its NAME marked with "*".

A server with --sandbox kube also lists the Kubernetes cluster's nodes, in a
second table: each node's region (its topology.kubernetes.io/region label),
whether it is Ready, and how many pods Stratus runs on it in the server's
namespace: INSTANCES (function instances, those prepared ahead included) and
REPLICAS (service replicas), of every server. When the server may not list
the cluster's nodes, a note says so and how to allow it.

-o json prints {"nodes": [...]}, every field of each node, and from a server
with --sandbox kube "kubeNodes": {"namespace", "nodes": [...], "pending",
"note"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			list, err := c.NodeList(cmd.Context())
			if err != nil {
				return err
			}
			if list.Nodes == nil {
				list.Nodes = []v1.Node{}
			}
			if e.output == "json" {
				return e.json(list)
			}
			if err := e.nodesTable(list.Nodes); err != nil {
				return err
			}
			if list.Kube != nil {
				return e.kubeNodesTable(list.Kube)
			}
			return nil
		},
	}
}

// nodesTable prints the servers of the cluster.
func (e *env) nodesTable(nodes []v1.Node) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREGION\tSTATE\tHEARTBEAT\tINSTANCES\tREPLICAS\tADDRESS")
	for _, n := range nodes {
		name, state := n.Name, n.State
		if n.Self {
			name += "*"
		}
		instances, replicas := strconv.Itoa(n.Instances), strconv.Itoa(n.Replicas)
		if !n.Alive {
			state, instances, replicas = "dead", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, orDash(n.Region), orDash(state),
			heartbeatCell(n.HeartbeatAgeSec), instances, replicas, orDash(n.Address))
	}
	return tw.Flush()
}

// kubeNodesTable prints the Kubernetes cluster's nodes after the servers,
// under a heading: a note in place of the nodes it could not read.
func (e *env) kubeNodesTable(k *v1.KubeNodes) error {
	fmt.Fprintf(e.stdout, "\nKubernetes nodes (Stratus pods of namespace %s):\n", orDash(k.Namespace))
	if k.Note != "" {
		fmt.Fprintf(e.stdout, "note: %s\n", k.Note)
	}
	if len(k.Nodes) > 0 {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tREGION\tREADY\tINSTANCES\tREPLICAS")
		for _, n := range k.Nodes {
			ready := "no"
			if n.Ready {
				ready = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", n.Name, orDash(n.Region), ready, n.Instances, n.Replicas)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	} else if k.Note == "" {
		fmt.Fprintln(e.stdout, "no nodes")
	}
	if k.Pending > 0 {
		fmt.Fprintf(e.stdout, "%d pods not yet on a node\n", k.Pending)
	}
	return nil
}

// heartbeatCell shows the age of a heartbeat, sec seconds, to the second:
// "1s ago", "2m5s ago".
func heartbeatCell(sec float64) string {
	if sec < 0 { // the store's clock ahead of the answering server's
		sec = 0
	}
	return time.Duration(sec*float64(time.Second)).Round(time.Second).String() + " ago"
}
