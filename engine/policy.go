package engine

import "github.com/taskerhq/tasker/ent"

// policy is what a step copies at task creation, so re-registering a
// template never changes running tasks.
type policy struct {
	maxAttempts        int
	backoffInitialMs   int64
	backoffMultiplier  float64
	backoffMaxMs       int64
	backoffJitter      float64
	leaseDurationMs    int64
	executionTimeoutMs int64
}

// effectivePolicy applies a step's overrides, field by field, to its
// template's defaults (which the registry filled at registration).
func effectivePolicy(tpl *ent.TaskTemplate, st *ent.StepTemplate) policy {
	return policy{
		maxAttempts:        deref(st.MaxAttempts, tpl.MaxAttempts),
		backoffInitialMs:   deref(st.BackoffInitialMs, tpl.BackoffInitialMs),
		backoffMultiplier:  deref(st.BackoffMultiplier, tpl.BackoffMultiplier),
		backoffMaxMs:       deref(st.BackoffMaxMs, tpl.BackoffMaxMs),
		backoffJitter:      deref(st.BackoffJitter, tpl.BackoffJitter),
		leaseDurationMs:    deref(st.LeaseDurationMs, tpl.LeaseDurationMs),
		executionTimeoutMs: deref(st.ExecutionTimeoutMs, tpl.ExecutionTimeoutMs),
	}
}

func deref[T any](p *T, def T) T {
	if p != nil {
		return *p
	}
	return def
}
