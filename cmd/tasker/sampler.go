package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// workerPlane are the RPCs workers call in a loop: long-polls for steps,
// lease extensions and reports. Their server spans start new traces only
// when the worker's own span is their parent (see workerPlaneSampler).
var workerPlane = map[string]bool{
	"tasker.v1.StepService/ClaimSteps":         true,
	"tasker.v1.StepService/ExtendLease":        true,
	"tasker.v1.StepService/CompleteStep":       true,
	"tasker.v1.StepService/FailStep":           true,
	"tasker.v1.StepService/ReleaseStep":        true,
	"tasker.v1.StepService/BatchCompleteSteps": true,
	"tasker.v1.StepService/BatchFailSteps":     true,
}

// workerPlaneSampler drops the root spans of worker-plane RPCs and asks
// next about everything else. A worker's long-polls and batched reports
// are not anybody's request: as roots they would be a trace per poll, a
// flood that hides the traces that matter, and a cost on every step. The
// work they carry is traced anyway, in the task's trace: each claimed step
// gets its span there and the worker's handler span under it. A worker
// that traces its own calls (its span is the RPC's parent) still gets the
// server's spans under them, sampled as next decides.
type workerPlaneSampler struct{ next sdktrace.Sampler }

func (s workerPlaneSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if workerPlane[p.Name] && !trace.SpanContextFromContext(p.ParentContext).IsValid() {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop,
			Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
	}
	return s.next.ShouldSample(p)
}

func (s workerPlaneSampler) Description() string {
	return "WorkerPlaneRootsDropped{" + s.next.Description() + "}"
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, as the OpenTelemetry specification defines
// them (parentbased_always_on when unset), wrapped in workerPlaneSampler.
// Unlike the SDK, which falls back to the default, it refuses a value it
// does not know, so a typo is found at start-up, not in a missing trace.
func samplerFromEnv() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", arg)
		}
		return r, nil
	}
	var next sdktrace.Sampler
	switch name {
	case "", "parentbased_always_on":
		next = sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		next = sdktrace.ParentBased(sdktrace.NeverSample())
	case "always_on":
		next = sdktrace.AlwaysSample()
	case "always_off":
		next = sdktrace.NeverSample()
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		next = sdktrace.TraceIDRatioBased(r)
		if name == "parentbased_traceidratio" {
			next = sdktrace.ParentBased(next)
		}
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
	}
	return workerPlaneSampler{next: next}, nil
}
