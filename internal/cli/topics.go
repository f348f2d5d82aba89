package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
)

func (e *env) topicCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Publish CloudEvents to topics that functions and URLs subscribe to",
	}
	cmd.AddCommand(e.topicCreateCmd(), e.topicLsCmd(), e.topicRmCmd(), e.topicPublishCmd())
	return cmd
}

func (e *env) topicCreateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := stratus.ValidName(args[0]); err != nil {
				return usageErr("topic %v", err)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			tp, err := c.CreateTopic(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(tp)
			}
			fmt.Fprintf(e.stdout, "created topic %s\n", tp.Name)
			return nil
		},
	}
}

func (e *env) topicLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List topics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			tps, err := c.Topics(cmd.Context())
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(tps)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSUBSCRIPTIONS\tPENDING\tCREATED")
			for _, tp := range tps {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", tp.Name, tp.Subscriptions, pendingCell(tp.Pending), tp.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func (e *env) topicRmCmd() *cobra.Command {
	return e.removeCmd("Delete a topic, its subscriptions and its undelivered events", "topic ", func(ctx context.Context, c *client.Client, name string) error {
		return c.RemoveTopic(ctx, name)
	})
}

// pendingCell shows a count of pending events, "-" when the server does
// not know it.
func pendingCell(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

// oldestCell shows how long ago the oldest of n pending events was
// stored, "-" when there is none or the server does not know.
func oldestCell(n *int64, sec *float64) string {
	if n == nil || *n == 0 || sec == nil {
		return "-"
	}
	return time.Duration(*sec * float64(time.Second)).Round(time.Second).String()
}

// readArg returns s, or the contents of file F when s is @F.
func readArg(flag, s string) ([]byte, error) {
	if !strings.HasPrefix(s, "@") {
		return []byte(s), nil
	}
	b, err := os.ReadFile(s[1:])
	if err != nil {
		return nil, usageErr("%s %s: %v", flag, s, err)
	}
	return b, nil
}

func (e *env) topicPublishCmd() *cobra.Command {
	var data, typ, source, id, file string
	cmd := &cobra.Command{
		Use:   "publish NAME (--data JSON [--type T] [--source S] [--id ID] | --file F)",
		Short: "Publish a CloudEvent (or a batch of them) to a topic",
		Long: `Publish a CloudEvent to a topic and print its id once the server has stored it.

With --data the command builds the event: its data is the JSON given (or
@FILE to read it), its type --type (default stratus.cli), its source
--source (default stratus/cli), its id --id (default a new UUID).

With --file F it sends F as it is: a structured-mode CloudEvent (a JSON
object) or a batch (a JSON array of them).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			fl := cmd.Flags()
			var body []byte
			contentType := v1.ContentTypeCloudEvent
			if file != "" {
				for _, f := range []string{"data", "type", "source", "id"} {
					if fl.Changed(f) {
						return usageErr("--file sends a ready event; --%s does not go with it", f)
					}
				}
				b, err := os.ReadFile(file)
				if err != nil {
					return usageErr("--file %s: %v", file, err)
				}
				b = bytes.TrimSpace(b)
				switch {
				case len(b) > 0 && b[0] == '[':
					contentType = v1.ContentTypeCloudEventBatch
				case len(b) > 0 && b[0] == '{':
				default:
					return usageErr("--file %s: want a CloudEvent (a JSON object) or a batch (a JSON array)", file)
				}
				body = b
			} else {
				ev := map[string]any{"specversion": "1.0", "id": id, "source": source, "type": typ}
				if id == "" {
					ev["id"] = uuid.NewString()
				}
				if fl.Changed("data") {
					b, err := readArg("--data", data)
					if err != nil {
						return err
					}
					if !json.Valid(b) {
						return usageErr("--data is not valid JSON (quote a string: --data '\"text\"')")
					}
					ev["datacontenttype"] = "application/json"
					ev["data"] = json.RawMessage(b)
				}
				b, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				body = b
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ids, err := c.Publish(cmd.Context(), topic, contentType, nil, body)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(v1.Published{IDs: ids})
			}
			for _, id := range ids {
				fmt.Fprintln(e.stdout, id)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&data, "data", "", "the event's data: JSON, or @FILE to read it from a file")
	fl.StringVar(&typ, "type", "stratus.cli", "the event's type")
	fl.StringVar(&source, "source", "stratus/cli", "the event's source")
	fl.StringVar(&id, "id", "", "the event's id (default a new UUID)")
	fl.StringVar(&file, "file", "", "send this file: a structured CloudEvent or a batch")
	return cmd
}

func (e *env) subscribeCmd() *cobra.Command {
	var spec v1.SubscriptionSpec
	cmd := &cobra.Command{
		Use:   "subscribe TOPIC (--function FN | --url URL) [--filter type=T | source-prefix=P] [--batch N]",
		Short: "Deliver a topic's events to a function (async invocations) or a URL (HTTP POSTs)",
		Long: `Subscribe a function or a URL to a topic's events, from now on.

A function receives each matching CloudEvent as the event of an asynchronous
invocation, or with --batch N a JSON list of up to N events (collected for at
most a second). A URL receives each event as an HTTP POST in structured mode
(application/cloudevents+json); failed POSTs are tried again with backoff.

--filter type=EXACT passes events of that type, --filter source-prefix=P
events whose source starts with P.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (spec.Function == "") == (spec.URL == "") {
				return usageErr("give one of --function and --url")
			}
			if cmd.Flags().Changed("batch") && spec.Batch < 1 {
				return usageErr("--batch %d: must be at least 1", spec.Batch)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			sub, err := c.Subscribe(cmd.Context(), args[0], spec)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(sub)
			}
			fmt.Fprintln(e.stdout, sub.ID)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&spec.Function, "function", "", "function to invoke with each event")
	fl.StringVar(&spec.URL, "url", "", "URL to POST each event to")
	fl.StringVar(&spec.Filter, "filter", "", "type=EXACT or source-prefix=PREFIX")
	fl.IntVar(&spec.Batch, "batch", 1, fmt.Sprintf("events per invocation, as a JSON list when above 1 (at most %d; functions only)", stratus.MaxSubscriptionBatch))
	return cmd
}

func (e *env) subscriptionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "subscriptions [TOPIC]",
		Short: "List the subscriptions of a topic, or of every topic",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := ""
			if len(args) == 1 {
				topic = args[0]
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			subs, err := c.Subscriptions(cmd.Context(), topic)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(subs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTOPIC\tDELIVERS TO\tFILTER\tBATCH\tPENDING\tOLDEST\tCREATED")
			for _, s := range subs {
				to := "function " + s.Function
				if s.URL != "" {
					to = s.URL
				}
				filter := s.Filter
				if filter == "" {
					filter = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Topic, to, filter, s.Batch,
					pendingCell(s.Pending), oldestCell(s.Pending, s.OldestAgeSec), s.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func (e *env) unsubscribeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unsubscribe ID",
		Short: "Delete a subscription",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.Unsubscribe(cmd.Context(), args[0]); err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(map[string]string{"removed": args[0]})
			}
			fmt.Fprintf(e.stdout, "removed subscription %s\n", args[0])
			return nil
		},
	}
}
