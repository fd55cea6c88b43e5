package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// The canonical form that ContentHash digests. It is built by hand rather
// than with protojson, whose output is deliberately unstable between
// releases; encoding/json writes struct fields in declaration order and map
// keys sorted, so equal content always encodes to the same bytes. Changing
// these types changes every hash, which turns re-registrations of unchanged
// templates into AlreadyExists: don't, short of a migration that rehashes.
type (
	canonTemplate struct {
		Namespace        string       `json:"namespace"`
		Name             string       `json:"name"`
		Version          string       `json:"version"`
		Description      string       `json:"description"`
		IdentityStrategy int32        `json:"identity_strategy"`
		ContextSchema    any          `json:"context_schema"`
		RetryPolicy      *canonPolicy `json:"retry_policy"`
		LeaseDuration    *int64       `json:"lease_duration_ns"`
		ExecutionTimeout *int64       `json:"execution_timeout_ns"`
		Steps            []canonStep  `json:"steps"`
	}
	canonStep struct {
		Name             string       `json:"name"`
		Handler          string       `json:"handler"`
		DependsOn        []string     `json:"depends_on"`
		Config           any          `json:"config"`
		RetryPolicy      *canonPolicy `json:"retry_policy"`
		LeaseDuration    *int64       `json:"lease_duration_ns"`
		ExecutionTimeout *int64       `json:"execution_timeout_ns"`
		Description      string       `json:"description"`
		// Omitted when empty, so the hashes of templates without
		// built-in steps stay what they were.
		Builtin string          `json:"builtin,omitempty"`
		HTTP    json.RawMessage `json:"http,omitempty"`
	}
	canonPolicy struct {
		MaxAttempts       *int32   `json:"max_attempts"`
		InitialBackoff    *int64   `json:"initial_backoff_ns"`
		BackoffMultiplier *float64 `json:"backoff_multiplier"`
		MaxBackoff        *int64   `json:"max_backoff_ns"`
		Jitter            *float64 `json:"jitter"`
	}
)

// ContentHash returns the SHA-256 (hex) of t's normalized content, output-only
// fields excluded: equal for identical registrations, which makes them
// no-ops, and different for any change to what is stored. t must be valid
// (Validate); ContentHash panics on a Struct holding NaN or infinity, which
// Validate refuses.
func ContentHash(t *taskerv1.TaskTemplate) string {
	n := Normalize(t)
	c := canonTemplate{
		Namespace:        n.GetNamespace(),
		Name:             n.GetName(),
		Version:          n.GetVersion(),
		Description:      n.GetDescription(),
		IdentityStrategy: int32(n.GetIdentityStrategy()),
		RetryPolicy:      canonRetry(n.GetRetryPolicy()),
		LeaseDuration:    nanos(n.GetLeaseDuration()),
		ExecutionTimeout: nanos(n.GetExecutionTimeout()),
		Steps:            make([]canonStep, 0, len(n.GetSteps())),
	}
	if s := n.GetContextSchema(); s != nil {
		c.ContextSchema = s.AsMap()
	}
	for _, s := range n.GetSteps() {
		cs := canonStep{
			Name:             s.GetName(),
			Handler:          s.GetHandler(),
			DependsOn:        s.GetDependsOn(),
			RetryPolicy:      canonRetry(s.GetRetryPolicy()),
			LeaseDuration:    nanos(s.GetLeaseDuration()),
			ExecutionTimeout: nanos(s.GetExecutionTimeout()),
			Description:      s.GetDescription(),
		}
		if cfg := s.GetConfig(); cfg != nil {
			cs.Config = cfg.AsMap()
		}
		if s.GetBuiltin() != "" {
			cs.Builtin = s.GetBuiltin()
		}
		if h := s.GetHttp(); h != nil {
			cs.HTTP = canonHTTP(h)
		}
		c.Steps = append(c.Steps, cs)
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("registry.ContentHash of an invalid template: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func canonRetry(rp *taskerv1.RetryPolicy) *canonPolicy {
	if rp == nil {
		return nil
	}
	return &canonPolicy{
		MaxAttempts:       rp.MaxAttempts,
		InitialBackoff:    nanos(rp.GetInitialBackoff()),
		BackoffMultiplier: rp.BackoffMultiplier,
		MaxBackoff:        nanos(rp.GetMaxBackoff()),
		Jitter:            rp.Jitter,
	}
}

func nanos(d *durationpb.Duration) *int64 {
	if d == nil {
		return nil
	}
	n := d.AsDuration().Nanoseconds()
	return &n
}

// canonHTTP encodes an http config for the hash: protojson's bytes are
// unstable, so they are decoded and encoded again with encoding/json, which
// sorts the keys.
func canonHTTP(c *taskerv1.HttpStepConfig) json.RawMessage {
	var v any
	if err := json.Unmarshal(httpJSON(c), &v); err != nil {
		panic(fmt.Sprintf("registry: decode an http config: %v", err))
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("registry: encode an http config: %v", err))
	}
	return b
}
