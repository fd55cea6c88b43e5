package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

func statsCommand() *cobra.Command {
	var namespace, until string
	var since time.Duration
	var limit int32
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "What a namespace did in a time window: throughput, error rates and latency per handler, the slowest tasks and steps",
		Long: "Report on a namespace over the window from --since before --until (default now) to --until: tasks and step\n" +
			"attempts per minute, per handler the error rate and p50/p95/p99 attempt durations, the slowest tasks and steps\n" +
			"with their ids, the tasks and steps created in the window by state, and the handlers no worker serves.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&namespace, "namespace", "", "the namespace to report on (required)")
	cmd.Flags().DurationVar(&since, "since", time.Hour, "the length of the window, ending at --until")
	cmd.Flags().StringVar(&until, "until", "", "the end of the window, RFC 3339 (default now)")
	cmd.Flags().Int32Var(&limit, "limit", 0, "how many of the slowest tasks and steps to list (default the server's, 10)")
	return clientCommand(cmd, func(ctx context.Context, c *client, _ []string) error {
		if namespace == "" {
			return usageErrorf("--namespace is required")
		}
		if since <= 0 {
			return usageErrorf("--since: want a positive duration, got %s", since)
		}
		end := time.Now()
		if until != "" {
			t, err := time.Parse(time.RFC3339Nano, until)
			if err != nil {
				return usageErrorf("--until: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", until)
			}
			end = t
		}
		resp, err := taskerv1.NewTaskServiceClient(c.conn).GetTaskStats(ctx, &taskerv1.GetTaskStatsRequest{
			Namespace: namespace, StartTime: timestamppb.New(end.Add(-since)), EndTime: timestamppb.New(end), SlowestLimit: limit,
		})
		if err != nil {
			return err
		}
		return c.print(resp, func(w io.Writer) { statsTable(w, resp) })
	})
}

// statsTable draws the report: a summary, then a table per handler, the
// slowest tasks and the slowest steps.
func statsTable(w io.Writer, r *taskerv1.GetTaskStatsResponse) {
	tc, sc := r.GetTaskCounts(), r.GetStepCounts()
	sampled := "no"
	if r.GetSampled() {
		sampled = "yes: percentiles and slowest lists cover the most recent attempts and tasks"
	}
	rows := [][2]string{
		{"Namespace", r.GetNamespace()},
		{"Window", stamp(r.GetStartTime()) + " to " + stamp(r.GetEndTime())},
		{"Tasks finished", fmt.Sprintf("%d (%g/min)", r.GetTasksFinished(), r.GetTasksPerMinute())},
		{"Step attempts", fmt.Sprintf("%d (%g/min)", r.GetStepAttempts(), r.GetStepsPerMinute())},
		{"Task duration", percentileText(r.GetTaskDuration())},
		{"Tasks created", counts(int(tc.GetTotal()), []string{"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"},
			tc.GetPending(), tc.GetInProgress(), tc.GetComplete(), tc.GetError(), tc.GetCancelled(), tc.GetResolvedManually())},
		{"Their steps", counts(int(sc.GetTotal()), []string{"pending", "enqueued", "in_progress", "waiting_for_retry", "complete", "error", "cancelled", "resolved_manually"},
			sc.GetPending(), sc.GetEnqueued(), sc.GetInProgress(), sc.GetWaitingForRetry(), sc.GetComplete(), sc.GetError(), sc.GetCancelled(), sc.GetResolvedManually())},
		{"No workers", dash(strings.Join(r.GetHandlersWithoutWorkers(), ", "))},
		{"Sampled", sampled},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "%s:\t%s\n", row[0], row[1])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "HANDLER\tATTEMPTS\tCOMPLETED\tFAILED\tERROR RATE\tP50\tP95\tP99\tMAX")
	for _, h := range r.GetHandlers() {
		d := h.GetDuration()
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%.1f%%\t%s\t%s\t%s\t%s\n", h.GetHandler(), h.GetAttempts(), h.GetCompleted(), h.GetFailed(),
			100*h.GetErrorRate(), dur(d.GetP50()), dur(d.GetP95()), dur(d.GetP99()), dur(d.GetMax()))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "SLOWEST TASK\tTEMPLATE\tSTATE\tDURATION\tFINISHED")
	for _, t := range r.GetSlowestTasks() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.GetTaskId(), t.GetTemplateName(), enumName(t.GetState(), "TASK_STATE_"),
			dur(t.GetDuration()), stamp(t.GetFinishTime()))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "SLOWEST STEP\tTASK\tNAME\tHANDLER\tATTEMPT\tSTATE\tDURATION\tFINISHED")
	for _, s := range r.GetSlowestSteps() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.GetStepId(), s.GetTaskId(), s.GetName(), s.GetHandler(), s.GetAttempt(),
			enumName(s.GetState(), "STEP_STATE_"), dur(s.GetDuration()), stamp(s.GetFinishTime()))
	}
}

// counts lists the states with tasks or steps in them after the total.
func counts(total int, names []string, values ...int32) string {
	parts := []string{fmt.Sprint(total)}
	for i, v := range values {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", names[i], v))
		}
	}
	return strings.Join(parts, ", ")
}

func percentileText(p *taskerv1.DurationPercentiles) string {
	if p.GetSampleSize() == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s, p95 %s, p99 %s, max %s (%d)", dur(p.GetP50()), dur(p.GetP95()), dur(p.GetP99()), dur(p.GetMax()), p.GetSampleSize())
}

// dur shows a duration to the millisecond.
func dur(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().Round(time.Millisecond).String()
}
