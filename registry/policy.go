package registry

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// Policy is the retry policy, lease and execution timeout one step runs
// with: the template's values overridden field by field by the step's. The
// engine copies it onto each step at task creation, so re-registering a
// template never changes a running task.
type Policy struct {
	// MaxAttempts counts every attempt, the first included.
	MaxAttempts int
	// InitialBackoff is the delay before the second attempt.
	InitialBackoff time.Duration
	// BackoffMultiplier grows the delay after each attempt.
	BackoffMultiplier float64
	// MaxBackoff caps the delay.
	MaxBackoff time.Duration
	// Jitter is the fraction of the delay randomised away, 0..1.
	Jitter float64
	// LeaseDuration is how long a claim holds before it must be extended.
	LeaseDuration time.Duration
	// ExecutionTimeout bounds one attempt regardless of the lease; 0 means
	// none.
	ExecutionTimeout time.Duration
}

// defaultPolicy is what a template that sets nothing gets, as documented on
// RetryPolicy and TaskTemplate.lease_duration.
var defaultPolicy = Policy{
	MaxAttempts:       3,
	InitialBackoff:    time.Second,
	BackoffMultiplier: 2,
	MaxBackoff:        5 * time.Minute,
	Jitter:            0.2,
	LeaseDuration:     30 * time.Second,
}

// EffectivePolicy returns the policy step runs with under tpl. tpl need not
// be normalized: its unset fields take the service defaults. Both must be
// valid (Validate).
func EffectivePolicy(tpl *taskerv1.TaskTemplate, step *taskerv1.StepTemplate) Policy {
	p := override(defaultPolicy, tpl.GetRetryPolicy(), tpl.GetLeaseDuration(), tpl.GetExecutionTimeout())
	return override(p, step.GetRetryPolicy(), step.GetLeaseDuration(), step.GetExecutionTimeout())
}

func override(p Policy, rp *taskerv1.RetryPolicy, lease, timeout *durationpb.Duration) Policy {
	if rp == nil {
		rp = &taskerv1.RetryPolicy{}
	}
	if rp.MaxAttempts != nil {
		p.MaxAttempts = int(rp.GetMaxAttempts())
	}
	if rp.GetInitialBackoff() != nil {
		p.InitialBackoff = rp.GetInitialBackoff().AsDuration()
	}
	if rp.BackoffMultiplier != nil {
		p.BackoffMultiplier = rp.GetBackoffMultiplier()
	}
	if rp.GetMaxBackoff() != nil {
		p.MaxBackoff = rp.GetMaxBackoff().AsDuration()
	}
	if rp.Jitter != nil {
		p.Jitter = rp.GetJitter()
	}
	if lease != nil {
		p.LeaseDuration = lease.AsDuration()
	}
	if timeout != nil {
		p.ExecutionTimeout = timeout.AsDuration()
	}
	return p
}

// Normalize returns a copy of t as it is stored: output-only fields
// cleared, every template-level default filled in (so GetTaskTemplate shows
// what applies) and steps exactly as written, except that an empty config
// or an empty retry policy is dropped, since they mean the same as none. A
// template-level execution timeout of 0 is dropped likewise, and documents
// are rebuilt from their JSON, as the database returns them (a Value with
// no kind becomes null). t must be valid.
func Normalize(t *taskerv1.TaskTemplate) *taskerv1.TaskTemplate {
	n := proto.Clone(t).(*taskerv1.TaskTemplate)
	n.CreateTime, n.UpdateTime, n.ContentHash = nil, nil, ""
	if n.IdentityStrategy == taskerv1.IdentityStrategy_IDENTITY_STRATEGY_UNSPECIFIED {
		n.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_ALWAYS_UNIQUE
	}
	p := override(defaultPolicy, n.GetRetryPolicy(), n.GetLeaseDuration(), n.GetExecutionTimeout())
	n.RetryPolicy = &taskerv1.RetryPolicy{
		MaxAttempts:       proto.Int32(int32(p.MaxAttempts)),
		InitialBackoff:    durationpb.New(p.InitialBackoff),
		BackoffMultiplier: proto.Float64(p.BackoffMultiplier),
		MaxBackoff:        durationpb.New(p.MaxBackoff),
		Jitter:            proto.Float64(p.Jitter),
	}
	n.LeaseDuration = durationpb.New(p.LeaseDuration)
	n.ExecutionTimeout = nil
	if p.ExecutionTimeout != 0 {
		n.ExecutionTimeout = durationpb.New(p.ExecutionTimeout)
	}
	if n.ContextSchema != nil {
		n.ContextSchema = jsonStruct(n.ContextSchema)
	}
	for _, s := range n.Steps {
		if len(s.GetConfig().GetFields()) == 0 {
			s.Config = nil
		} else {
			s.Config = jsonStruct(s.Config)
		}
		if rp := s.GetRetryPolicy(); rp != nil && rp.MaxAttempts == nil && rp.InitialBackoff == nil &&
			rp.BackoffMultiplier == nil && rp.MaxBackoff == nil && rp.Jitter == nil {
			s.RetryPolicy = nil
		}
		if len(s.DependsOn) == 0 {
			s.DependsOn = nil
		}
	}
	return n
}

// jsonStruct returns s as it reads back from its JSON encoding.
func jsonStruct(s *structpb.Struct) *structpb.Struct {
	c, err := structpb.NewStruct(s.AsMap())
	if err != nil {
		return s // unreachable: AsMap returns only what NewStruct takes
	}
	return c
}
