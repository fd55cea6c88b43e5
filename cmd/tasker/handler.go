package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

func handlerCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "handler", Short: "List the step handlers templates use and workers serve"}
	var namespace string
	var within time.Duration
	list := &cobra.Command{Use: "list", Short: "List handlers: which templates use them and which workers claimed for them recently", Args: cobra.NoArgs}
	list.Flags().StringVar(&namespace, "namespace", "", "only handlers of this namespace")
	list.Flags().DurationVar(&within, "active-within", 0, "count workers seen this recently (default the server's)")
	cmd.AddCommand(clientCommand(list, func(ctx context.Context, c *client, _ []string) error {
		req := &taskerv1.ListHandlersRequest{Namespace: namespace}
		if within > 0 {
			req.ActiveWithin = durationpb.New(within)
		}
		resp, err := taskerv1.NewRegistryServiceClient(c.conn).ListHandlers(ctx, req)
		if err != nil {
			return err
		}
		return c.print(resp, func(w io.Writer) {
			fmt.Fprintln(w, "NAMESPACE\tHANDLER\tUSED BY TEMPLATES\tWORKERS\tLAST SEEN")
			for _, h := range resp.GetHandlers() {
				var workers []string
				for _, wk := range h.GetWorkers() {
					workers = append(workers, wk.GetWorkerId())
				}
				fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%s\n", h.GetHandler().GetNamespace(), h.GetHandler().GetHandler(),
					h.GetUsedByTemplates(), dash(strings.Join(workers, ",")), stamp(h.GetLastSeenTime()))
			}
		})
	}))
	return cmd
}

func eventTypesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "types", Short: "List the built-in event types and their payload fields", Args: cobra.NoArgs}
	return clientCommand(cmd, func(ctx context.Context, c *client, _ []string) error {
		resp, err := taskerv1.NewEventServiceClient(c.conn).ListEventTypes(ctx, &taskerv1.ListEventTypesRequest{})
		if err != nil {
			return err
		}
		return c.print(resp, func(w io.Writer) {
			fmt.Fprintln(w, "TYPE\tPAYLOAD\tDESCRIPTION")
			for _, t := range resp.GetEventTypes() {
				var fields []string
				for _, f := range t.GetPayloadFields() {
					fields = append(fields, f.GetName())
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", t.GetName(), dash(strings.Join(fields, ",")), t.GetDescription())
			}
		})
	})
}
