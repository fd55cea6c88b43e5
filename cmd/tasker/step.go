package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

func stepCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "step", Short: "Inspect and operate the steps of tasks on a running server"}
	cmd.AddCommand(stepGetCommand(), stepListCommand(), stepRetryCommand(), stepResolveCommand(), stepCancelCommand())
	return cmd
}

func stepGetCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "get ID", Short: "Show a step, with its config, result and last error", Args: cobra.ExactArgs(1)}
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		resp, err := taskerv1.NewStepServiceClient(c.conn).GetStep(ctx, &taskerv1.GetStepRequest{Id: args[0]})
		if err != nil {
			return err
		}
		return c.print(resp, func(w io.Writer) { stepDetail(w, resp.GetStep()) })
	})
}

func stepListCommand() *cobra.Command {
	var task, namespace, handler, pageToken string
	var states []string
	var pageSize int32
	var full bool
	cmd := &cobra.Command{Use: "list", Short: "List steps: those of a task, or across tasks by namespace, handler and state", Args: cobra.NoArgs}
	cmd.Flags().StringVar(&task, "task", "", "only steps of this task id")
	cmd.Flags().StringVar(&namespace, "namespace", "", "only steps of this namespace")
	cmd.Flags().StringVar(&handler, "handler", "", "only steps run by this handler")
	cmd.Flags().StringArrayVar(&states, "state", nil, "only steps in this state (pending, enqueued, in_progress, waiting_for_retry, complete, error, cancelled, resolved_manually); repeat for several")
	cmd.Flags().BoolVar(&full, "full", false, "include config and results in JSON and YAML output")
	cmd.Flags().Int32Var(&pageSize, "page-size", 0, "steps per page (default the server's)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "the next page of an earlier list")
	return clientCommand(cmd, func(ctx context.Context, c *client, _ []string) error {
		req := &taskerv1.ListStepsRequest{TaskId: task, Namespace: namespace, Handler: handler, PageSize: pageSize, PageToken: pageToken}
		if full {
			req.View = taskerv1.StepView_STEP_VIEW_FULL
		}
		for _, s := range states {
			v, ok := taskerv1.StepState_value["STEP_STATE_"+strings.ToUpper(s)]
			if !ok || v == 0 {
				return usageErrorf("--state: unknown step state %q", s)
			}
			req.States = append(req.States, taskerv1.StepState(v))
		}
		resp, err := taskerv1.NewStepServiceClient(c.conn).ListSteps(ctx, req)
		if err != nil {
			return err
		}
		if err := c.print(resp, func(w io.Writer) { stepTable(w, resp.GetSteps()) }); err != nil {
			return err
		}
		c.nextPage(resp.GetNextPageToken())
		return nil
	})
}

func stepRetryCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{Use: "retry ID", Short: "Run a step in error again", Args: cobra.ExactArgs(1)}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the task's events")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		resp, err := taskerv1.NewStepServiceClient(c.conn).RetryStep(ctx, &taskerv1.RetryStepRequest{Id: args[0], Reason: reason})
		if err != nil {
			return err
		}
		return c.printStep(resp.GetStep())
	})
}

func stepResolveCommand() *cobra.Command {
	var reason, result string
	cmd := &cobra.Command{
		Use:   "resolve ID",
		Short: "Mark a step resolved manually, with the result its children see",
		Long:  "Mark a step resolved manually. --result is the JSON object its children receive: inline, @file.json or - for stdin.",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the task's events")
	cmd.Flags().StringVar(&result, "result", "", "the step's result: a JSON object, @file.json or - for stdin")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		req := &taskerv1.ResolveStepRequest{Id: args[0], Reason: reason}
		if result != "" {
			data, err := readJSONArg("--result", result, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if req.Result, err = parseStruct("--result", data); err != nil {
				return err
			}
		}
		resp, err := taskerv1.NewStepServiceClient(c.conn).ResolveStep(ctx, req)
		if err != nil {
			return err
		}
		return c.printStep(resp.GetStep())
	})
}

func stepCancelCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{Use: "cancel ID", Short: "Cancel an unfinished step; its descendants will not run", Args: cobra.ExactArgs(1)}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the task's events")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		resp, err := taskerv1.NewStepServiceClient(c.conn).CancelStep(ctx, &taskerv1.CancelStepRequest{Id: args[0], Reason: reason})
		if err != nil {
			return err
		}
		return c.printStep(resp.GetStep())
	})
}

func (c *client) printStep(s *taskerv1.Step) error {
	return c.print(s, func(w io.Writer) { stepTable(w, []*taskerv1.Step{s}) })
}

// stepTable is the one-line-per-step table.
func stepTable(w io.Writer, steps []*taskerv1.Step) {
	fmt.Fprintln(w, "STEP ID\tNAME\tHANDLER\tSTATE\tATTEMPTS\tUPDATED")
	for _, s := range steps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", s.GetId(), s.GetName(), s.GetHandler(),
			enumName(s.GetState(), "STEP_STATE_"), s.GetAttempts(), s.GetMaxAttempts(), stamp(s.GetUpdateTime()))
	}
}

// stepDetail is one step, field by field.
func stepDetail(w io.Writer, s *taskerv1.Step) {
	js := func(m *structpb.Struct) string {
		if m == nil {
			return "-"
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			return "-"
		}
		return string(compactJSON(b))
	}
	lastErr := "-"
	if e := s.GetLastError(); e != nil {
		lastErr = fmt.Sprintf("%s (attempt %d, %s)", e.GetMessage(), e.GetAttempt(), dash(e.GetType()))
	}
	rows := [][2]string{
		{"ID", s.GetId()},
		{"Task", s.GetTaskId()},
		{"Name", s.GetName()},
		{"Handler", s.GetHandler()},
		{"State", enumName(s.GetState(), "STEP_STATE_")},
		{"Depends on", dash(strings.Join(s.GetDependsOn(), ", "))},
		{"Attempts", fmt.Sprintf("%d/%d", s.GetAttempts(), s.GetMaxAttempts())},
		{"Claimed by", dash(s.GetClaimedBy())},
		{"Config", js(s.GetConfig())},
		{"Result", js(s.GetResult())},
		{"Last error", lastErr},
		{"Created", stamp(s.GetCreateTime())},
		{"Available at", stamp(s.GetAvailableAt())},
		{"Finished", stamp(s.GetFinishTime())},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
	}
}
