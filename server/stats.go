package server

import (
	"context"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

func (s *taskService) GetTaskStats(ctx context.Context, req *taskerv1.GetTaskStatsRequest) (*taskerv1.GetTaskStatsResponse, error) {
	p := engine.StatsParams{Namespace: req.GetNamespace(), Slowest: int(req.GetSlowestLimit())}
	for _, f := range []struct {
		name string
		ts   *timestamppb.Timestamp
		to   *time.Time
	}{{"start_time", req.GetStartTime(), &p.From}, {"end_time", req.GetEndTime(), &p.To}} {
		if f.ts == nil {
			continue
		}
		if err := f.ts.CheckValid(); err != nil {
			return nil, fault.Invalid(f.name, "is not a valid timestamp: %v", err)
		}
		*f.to = f.ts.AsTime()
	}
	st, err := s.engine.Stats(ctx, p)
	if err != nil {
		return nil, err
	}
	return statsToProto(st), nil
}

func statsToProto(st *engine.Stats) *taskerv1.GetTaskStatsResponse {
	out := &taskerv1.GetTaskStatsResponse{
		Namespace:              st.Namespace,
		StartTime:              timestamppb.New(st.From),
		EndTime:                timestamppb.New(st.To),
		TasksFinished:          int64(st.TasksFinished),
		TasksPerMinute:         round(st.PerMinute(st.TasksFinished)),
		StepAttempts:           int64(st.StepAttempts),
		StepsPerMinute:         round(st.PerMinute(st.StepAttempts)),
		TaskDuration:           percentilesToProto(st.TaskDuration),
		HandlersWithoutWorkers: st.UnservedHandlers,
		Sampled:                st.Sampled,
		TaskCounts: &taskerv1.TaskCounts{
			Pending:          count(st.TaskCounts[engine.TaskPending]),
			InProgress:       count(st.TaskCounts[engine.TaskInProgress]),
			Complete:         count(st.TaskCounts[engine.TaskComplete]),
			Error:            count(st.TaskCounts[engine.TaskError]),
			Cancelled:        count(st.TaskCounts[engine.TaskCancelled]),
			ResolvedManually: count(st.TaskCounts[engine.TaskResolvedManually]),
		},
		StepCounts: stepCountsToProto(st.StepCounts),
	}
	for _, n := range st.TaskCounts {
		out.TaskCounts.Total += count(n)
	}
	for _, h := range st.Handlers {
		out.Handlers = append(out.Handlers, &taskerv1.HandlerStats{
			Handler:   h.Handler,
			Attempts:  int64(h.Attempts),
			Completed: int64(h.Completed),
			Failed:    int64(h.Failed),
			ErrorRate: round(h.ErrorRate()),
			Duration:  percentilesToProto(h.Duration),
		})
	}
	for _, t := range st.SlowestTasks {
		out.SlowestTasks = append(out.SlowestTasks, &taskerv1.SlowTask{
			TaskId:       t.TaskID.String(),
			TemplateName: t.TemplateName,
			State:        taskStatesToProto[t.State],
			Duration:     durationpb.New(t.Duration),
			FinishTime:   timestamppb.New(t.FinishedAt),
		})
	}
	for _, a := range st.SlowestSteps {
		out.SlowestSteps = append(out.SlowestSteps, &taskerv1.SlowStep{
			StepId:     a.StepID.String(),
			TaskId:     a.TaskID.String(),
			Name:       a.Name,
			Handler:    a.Handler,
			Attempt:    count(a.Attempt),
			State:      stepStatesToProto[a.State],
			Duration:   durationpb.New(a.Duration),
			FinishTime: timestamppb.New(a.FinishedAt),
		})
	}
	return out
}

func percentilesToProto(p engine.Percentiles) *taskerv1.DurationPercentiles {
	return &taskerv1.DurationPercentiles{
		P50: durationpb.New(p.P50), P95: durationpb.New(p.P95), P99: durationpb.New(p.P99),
		Max: durationpb.New(p.Max), SampleSize: int64(p.N),
	}
}

// round keeps rates to six decimals, so the same figures read the same in
// every output format.
func round(f float64) float64 {
	return math.Round(f*1e6) / 1e6
}
