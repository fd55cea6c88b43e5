package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// TestWorkerPlaneNamesExist: every RPC the sampler treats as a worker's is
// one the contract has, so a rename cannot silently bring back root spans.
func TestWorkerPlaneNamesExist(t *testing.T) {
	t.Parallel()
	have := map[string]bool{}
	for _, m := range taskerv1.StepService_ServiceDesc.Methods {
		have[taskerv1.StepService_ServiceDesc.ServiceName+"/"+m.MethodName] = true
	}
	for name := range workerPlane {
		require.True(t, have[name], "%s is not an RPC of StepService", name)
	}
}

func TestSamplerFromEnv(t *testing.T) {
	traceID := trace.TraceID{1}
	sampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true}))
	unsampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: trace.SpanID{2}, Remote: true}))
	const claim, create = "tasker.v1.StepService/ClaimSteps", "tasker.v1.TaskService/CreateTask"
	type call struct {
		parent context.Context
		name   string
		want   sdktrace.SamplingDecision
	}
	root := context.Background()
	for _, tc := range []struct {
		sampler, arg string
		calls        []call
		err          string
	}{
		{sampler: "", calls: []call{
			{root, create, sdktrace.RecordAndSample},
			{root, claim, sdktrace.Drop},
			{sampled, claim, sdktrace.RecordAndSample},
			{unsampled, claim, sdktrace.Drop},
			{unsampled, create, sdktrace.Drop},
		}},
		{sampler: "parentbased_always_on", calls: []call{{root, create, sdktrace.RecordAndSample}, {root, claim, sdktrace.Drop}}},
		{sampler: "always_on", calls: []call{{unsampled, create, sdktrace.RecordAndSample}, {root, claim, sdktrace.Drop}, {unsampled, claim, sdktrace.RecordAndSample}}},
		{sampler: "always_off", calls: []call{{sampled, create, sdktrace.Drop}}},
		{sampler: "parentbased_always_off", calls: []call{{root, create, sdktrace.Drop}, {sampled, claim, sdktrace.RecordAndSample}}},
		{sampler: "traceidratio", arg: "0", calls: []call{{root, create, sdktrace.Drop}}},
		{sampler: "parentbased_traceidratio", arg: "0", calls: []call{{root, create, sdktrace.Drop}, {sampled, create, sdktrace.RecordAndSample}}},
		{sampler: "TraceIDRatio", arg: "1", calls: []call{{root, create, sdktrace.RecordAndSample}}},
		{sampler: "traceidratio", arg: "1.5", err: "OTEL_TRACES_SAMPLER_ARG"},
		{sampler: "traceidratio", arg: "half", err: "OTEL_TRACES_SAMPLER_ARG"},
		{sampler: "jaeger_remote", err: "OTEL_TRACES_SAMPLER=\"jaeger_remote\""},
	} {
		t.Run(tc.sampler+"/"+tc.arg, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", tc.arg)
			s, err := samplerFromEnv()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			for _, c := range tc.calls {
				got := s.ShouldSample(sdktrace.SamplingParameters{ParentContext: c.parent, TraceID: traceID, Name: c.name})
				require.Equal(t, c.want, got.Decision, "%s under %v", c.name, trace.SpanContextFromContext(c.parent))
			}
		})
	}
}
