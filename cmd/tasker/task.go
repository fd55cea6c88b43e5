package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

func taskCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "Create, inspect and operate tasks on a running server"}
	cmd.AddCommand(taskCreateCommand(), taskGetCommand(), taskListCommand(),
		taskActionCommand("cancel", "Cancel a task: its unfinished steps are cancelled"),
		taskActionCommand("retry", "Retry a task in error: its steps in error run again"),
		taskActionCommand("resolve", "Mark a task in error as resolved manually"),
		taskGraphCommand(), taskWatchCommand())
	return cmd
}

func taskCreateCommand() *cobra.Command {
	var version, contextArg, idempotencyKey, runAt, reason string
	var priority int32
	var tags map[string]string
	cmd := &cobra.Command{
		Use:   "create NAMESPACE NAME",
		Short: "Create a task from a registered template",
		Long: "Create a task from the template NAMESPACE/NAME (the newest version unless --version).\n" +
			"--context is JSON given inline, as @file.json, or as - for stdin.",
		Args: cobra.ExactArgs(2),
	}
	cmd.Flags().StringVar(&version, "version", "", "template version (default the newest)")
	cmd.Flags().StringVar(&contextArg, "context", "", "task context: a JSON object, @file.json or - for stdin")
	cmd.Flags().StringVar(&idempotencyKey, "idempotency-key", "", "create at most one task for this key (a retry returns the first)")
	cmd.Flags().Int32Var(&priority, "priority", 0, "priority; higher runs first")
	cmd.Flags().StringVar(&runAt, "run-at", "", "start no earlier than this time (RFC 3339) or this long from now (e.g. 10m)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the task is created, kept on the task")
	cmd.Flags().StringToStringVar(&tags, "tag", nil, "tag key=value; repeat for several")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		req := &taskerv1.CreateTaskRequest{
			Namespace: args[0], Name: args[1], Version: version,
			IdempotencyKey: idempotencyKey, Priority: priority, Reason: reason, Tags: tags,
			Initiator: "tasker-cli", SourceSystem: "cli",
		}
		if contextArg != "" {
			data, err := readJSONArg("--context", contextArg, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if req.Context, err = parseStruct("--context", data); err != nil {
				return err
			}
		}
		if runAt != "" {
			t, err := parseRunAt(runAt, time.Now())
			if err != nil {
				return err
			}
			req.RunAt = timestamppb.New(t)
		}
		resp, err := taskerv1.NewTaskServiceClient(c.conn).CreateTask(ctx, req)
		if err != nil {
			return err
		}
		return c.print(resp, func(w io.Writer) {
			if resp.GetDuplicate() {
				fmt.Fprintln(w, "duplicate: the idempotency key names this existing task")
			}
			taskTable(w, []*taskerv1.Task{resp.GetTask()})
		})
	})
}

// parseRunAt reads --run-at: a time, or a duration from now.
func parseRunAt(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usageErrorf("--run-at: want an RFC 3339 time or a duration, got %q", v)
	}
	return t, nil
}

func taskGetCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "get ID", Short: "Show a task and its steps", Args: cobra.ExactArgs(1)}
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		resp, err := taskerv1.NewTaskServiceClient(c.conn).GetTask(ctx, &taskerv1.GetTaskRequest{Id: args[0]})
		if err != nil {
			return err
		}
		return c.print(resp, func(w io.Writer) { taskDetail(w, resp.GetTask()) })
	})
}

func taskListCommand() *cobra.Command {
	var namespace, template, pageToken string
	var states []string
	var pageSize int32
	cmd := &cobra.Command{Use: "list", Short: "List tasks, newest first", Args: cobra.NoArgs}
	cmd.Flags().StringVar(&namespace, "namespace", "", "only tasks of this namespace")
	cmd.Flags().StringVar(&template, "template", "", "only tasks of this template name")
	cmd.Flags().StringArrayVar(&states, "state", nil, "only tasks in this state (pending, in_progress, complete, error, cancelled, resolved_manually); repeat for several")
	cmd.Flags().Int32Var(&pageSize, "page-size", 0, "tasks per page (default the server's)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "the next page of an earlier list")
	return clientCommand(cmd, func(ctx context.Context, c *client, _ []string) error {
		req := &taskerv1.ListTasksRequest{Namespace: namespace, TemplateName: template, PageSize: pageSize, PageToken: pageToken}
		for _, s := range states {
			v, ok := taskerv1.TaskState_value["TASK_STATE_"+strings.ToUpper(s)]
			if !ok || v == 0 {
				return usageErrorf("--state: unknown task state %q", s)
			}
			req.States = append(req.States, taskerv1.TaskState(v))
		}
		resp, err := taskerv1.NewTaskServiceClient(c.conn).ListTasks(ctx, req)
		if err != nil {
			return err
		}
		if err := c.print(resp, func(w io.Writer) { taskTable(w, resp.GetTasks()) }); err != nil {
			return err
		}
		c.nextPage(resp.GetNextPageToken())
		return nil
	})
}

// taskActionCommand is cancel, retry or resolve: one task id and a reason.
func taskActionCommand(verb, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{Use: verb + " ID", Short: short, Args: cobra.ExactArgs(1)}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the task's events")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		tc := taskerv1.NewTaskServiceClient(c.conn)
		var task *taskerv1.Task
		var resp interface{ GetTask() *taskerv1.Task }
		var err error
		switch verb {
		case "cancel":
			resp, err = tc.CancelTask(ctx, &taskerv1.CancelTaskRequest{Id: args[0], Reason: reason})
		case "retry":
			resp, err = tc.RetryTask(ctx, &taskerv1.RetryTaskRequest{Id: args[0], Reason: reason})
		default:
			resp, err = tc.ResolveTask(ctx, &taskerv1.ResolveTaskRequest{Id: args[0], Reason: reason})
		}
		if err != nil {
			return err
		}
		task = resp.GetTask()
		return c.print(task, func(w io.Writer) { taskTable(w, []*taskerv1.Task{task}) })
	})
}

func taskGraphCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph ID",
		Short: "Show a task's step DAG with each step's state",
		Long: "Show a task's step DAG: --format tree draws it in the terminal with each step's state and attempts;\n" +
			"dot and mermaid print the source for Graphviz and Mermaid. --output json or yaml prints the graph itself.",
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&format, "format", "tree", "tree, dot or mermaid")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		if format != "tree" && format != "dot" && format != "mermaid" {
			return usageErrorf("--format: want tree, dot or mermaid, got %q", format)
		}
		resp, err := taskerv1.NewTaskServiceClient(c.conn).GetTaskGraph(ctx, &taskerv1.GetTaskGraphRequest{Id: args[0]})
		if err != nil {
			return err
		}
		if cmd.Flags().Changed("format") || c.format == outputTable {
			switch format {
			case "dot":
				_, err = io.WriteString(c.out, strings.TrimRight(resp.GetDot(), "\n")+"\n")
			case "mermaid":
				_, err = io.WriteString(c.out, strings.TrimRight(resp.GetMermaid(), "\n")+"\n")
			default:
				_, err = io.WriteString(c.out, drawTree(resp))
			}
			return err
		}
		return c.print(resp, nil)
	})
}

// drawTree draws the DAG from its roots down. A step with several parents
// is drawn in full under the first and referred to under the others. Edges
// name steps by name, which is unique within a task.
func drawTree(g *taskerv1.GetTaskGraphResponse) string {
	nodes := map[string]*taskerv1.GraphNode{}
	var order []string
	for _, n := range g.GetNodes() {
		nodes[n.GetName()] = n
		order = append(order, n.GetName())
	}
	children := map[string][]string{}
	hasParent := map[string]bool{}
	for _, e := range g.GetEdges() {
		children[e.GetParent()] = append(children[e.GetParent()], e.GetChild())
		hasParent[e.GetChild()] = true
	}
	byName := func(ids []string) {
		slices.SortFunc(ids, func(a, b string) int { return strings.Compare(nodes[a].GetName(), nodes[b].GetName()) })
	}
	var roots []string
	for _, id := range order {
		if !hasParent[id] {
			roots = append(roots, id)
		}
	}
	byName(roots)
	var b strings.Builder
	drawn := map[string]bool{}
	var draw func(id, indent string, last, top bool)
	draw = func(id, indent string, last, top bool) {
		n := nodes[id]
		branch, next := "├── ", "│   "
		if last {
			branch, next = "└── ", "    "
		}
		if top {
			branch, next = "", ""
		}
		label := fmt.Sprintf("%s [%s %d/%d] %s", n.GetName(), enumName(n.GetState(), "STEP_STATE_"), n.GetAttempts(), n.GetMaxAttempts(), n.GetHandler())
		if drawn[id] {
			fmt.Fprintf(&b, "%s%s%s (above)\n", indent, branch, n.GetName())
			return
		}
		drawn[id] = true
		fmt.Fprintf(&b, "%s%s%s\n", indent, branch, label)
		kids := slices.Clone(children[id])
		byName(kids)
		for i, k := range kids {
			draw(k, indent+next, i == len(kids)-1, false)
		}
	}
	for _, r := range roots {
		draw(r, "", true, true)
	}
	return b.String()
}

func taskWatchCommand() *cobra.Command {
	var heartbeat time.Duration
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Print a task's events, from its first, until it finishes",
		Long: "Print a task's events from its first until the task finishes, then exit: 0 when it completed or\n" +
			"was resolved manually, 1 when it ended in error or was cancelled. JSON output is one event per line.",
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().DurationVar(&heartbeat, "heartbeat", 15*time.Second, "how often the server confirms the stream is alive")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		stream, err := taskerv1.NewEventServiceClient(c.conn).Subscribe(ctx, &taskerv1.SubscribeRequest{
			Filter:            &taskerv1.EventFilter{TaskId: args[0]},
			Start:             taskerv1.StartPosition_START_POSITION_BEGINNING,
			UntilTaskFinished: true,
			HeartbeatInterval: durationpb.New(heartbeat),
		})
		if err != nil {
			return err
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			ev := msg.GetEvent()
			if ev == nil {
				continue
			}
			if err := c.printEvent(ev); err != nil {
				return err
			}
		}
		resp, err := taskerv1.NewTaskServiceClient(c.conn).GetTask(ctx, &taskerv1.GetTaskRequest{Id: args[0]})
		if err != nil {
			return err
		}
		switch st := resp.GetTask().GetState(); st {
		case taskerv1.TaskState_TASK_STATE_ERROR, taskerv1.TaskState_TASK_STATE_CANCELLED:
			return fmt.Errorf("task %s finished %s", args[0], enumName(st, "TASK_STATE_"))
		}
		return nil
	})
}

// printEvent writes one event: a line of the table, or a JSON line.
func (c *client) printEvent(ev *taskerv1.Event) error {
	if c.format == outputTable {
		_, err := fmt.Fprintf(c.out, "%d  %s  %-22s %s\n", ev.GetSequence(), stamp(ev.GetTime()), ev.GetType(), eventSubject(ev))
		return err
	}
	b, err := protojson.Marshal(ev)
	if err != nil {
		return err
	}
	if c.format == outputYAML {
		if b, err = marshal(ev, outputYAML); err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.out, "---\n%s", b)
		return err
	}
	_, err = fmt.Fprintf(c.out, "%s\n", compactJSON(b))
	return err
}

func eventSubject(ev *taskerv1.Event) string {
	if name, ok := ev.GetPayload().GetFields()["step_name"]; ok {
		return "step " + name.GetStringValue()
	}
	if ev.GetStepId() != "" {
		return "step " + ev.GetStepId()
	}
	return ""
}

// taskTable is the one-line-per-task table.
func taskTable(w io.Writer, tasks []*taskerv1.Task) {
	fmt.Fprintln(w, "ID\tNAMESPACE\tTEMPLATE\tVERSION\tSTATE\tSTEPS\tCREATED")
	for _, t := range tasks {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", t.GetId(), t.GetNamespace(), t.GetTemplateName(), t.GetTemplateVersion(),
			enumName(t.GetState(), "TASK_STATE_"), t.GetStepCounts().GetComplete()+t.GetStepCounts().GetResolvedManually(),
			t.GetStepCounts().GetTotal(), stamp(t.GetCreateTime()))
	}
}

// taskDetail is one task, field by field, then its steps.
func taskDetail(w io.Writer, t *taskerv1.Task) {
	ctx := "-"
	if t.GetContext() != nil {
		if b, err := protojson.Marshal(t.GetContext()); err == nil {
			ctx = string(compactJSON(b))
		}
	}
	rows := [][2]string{
		{"ID", t.GetId()},
		{"Template", fmt.Sprintf("%s/%s %s", t.GetNamespace(), t.GetTemplateName(), t.GetTemplateVersion())},
		{"State", enumName(t.GetState(), "TASK_STATE_")},
		{"Execution", enumName(t.GetExecutionStatus(), "EXECUTION_STATUS_")},
		{"Progress", fmt.Sprintf("%.0f%%", t.GetCompletionPercentage())},
		{"Priority", fmt.Sprint(t.GetPriority())},
		{"Correlation ID", dash(t.GetCorrelationId())},
		{"Idempotency key", dash(t.GetIdempotencyKey())},
		{"Context", ctx},
		{"Created", stamp(t.GetCreateTime())},
		{"Run at", stamp(t.GetRunAt())},
		{"Started", stamp(t.GetStartTime())},
		{"Finished", stamp(t.GetFinishTime())},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
	}
	if len(t.GetSteps()) > 0 {
		fmt.Fprintln(w)
		stepTable(w, t.GetSteps())
	}
}
