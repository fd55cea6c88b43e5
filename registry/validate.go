package registry

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Masterminds/semver/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// Bounds of a template, as documented on RegisterTaskTemplate.
const (
	// maxSteps and maxEdges bound the rows one CreateTask writes in one
	// transaction (a step and its dependencies each), which holds SQLite's
	// single writer: 450 steps with 101,000 edges held it for seconds.
	maxSteps        = 500
	maxEdges        = 5000
	maxDescription  = 4 << 10
	maxDocument     = 64 << 10 // a step's config or the context schema, as JSON
	maxTemplateSize = 1 << 20  // proto.Size of the whole template
	// maxVersionLen keeps the version, part of a unique index, short; real
	// versions are far shorter.
	maxVersionLen = 128
	// maxViolations bounds the error a hostile template can make us build
	// and send back; a real template has a handful.
	maxViolations = 100

	maxAttemptsBound = 100
	maxBackoffBound  = 24 * time.Hour
	minLease         = time.Second
	maxLease         = time.Hour
	maxTimeout       = 24 * time.Hour
	maxMultiplier    = 10.0
)

var (
	// Namespace and template names may use '.' and '-' so they can mirror
	// existing service names; step and handler names are identifiers in the
	// workers' code.
	namespaceRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)
	stepRE      = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// CheckNamespace returns "" when name is a valid namespace name (the rule of
// RegisterTaskTemplate), or what is wrong with it, without quoting it.
func CheckNamespace(name string) string { return ruleViolation(name, namespaceRE) }

// CheckHandler returns "" when name is a valid handler name (the rule of
// RegisterTaskTemplate), or what is wrong with it, without quoting it.
func CheckHandler(name string) string { return ruleViolation(name, stepRE) }

func ruleViolation(name string, re *regexp.Regexp) string {
	switch {
	case name == "":
		return "is required"
	case !re.MatchString(name):
		return "must match " + re.String()
	}
	return ""
}

// violations collects the bad fields of one request, so a client fixes them
// all in one round trip.
type violations []fault.Violation

func (vs *violations) add(field, format string, args ...any) {
	*vs = append(*vs, fault.Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (vs violations) err() error {
	switch {
	case len(vs) == 0:
		return nil
	case len(vs) > maxViolations:
		n := len(vs) - maxViolations
		vs = append(vs[:maxViolations:maxViolations], fault.Violation{
			Field:       "template",
			Description: fmt.Sprintf("%d more violations not listed", n),
		})
	}
	return fault.Invalids(vs)
}

// Validate checks a template against every rule of RegisterTaskTemplate and
// returns nil or an InvalidArgument *fault.Error listing each violation with
// its field path in the request (template.steps[2].depends_on[0], ...), at
// most the first 100. Output-only fields are ignored.
func Validate(t *taskerv1.TaskTemplate) error {
	var vs violations
	validateTemplate(&vs, t)
	return vs.err()
}

func validateTemplate(vs *violations, t *taskerv1.TaskTemplate) {
	const p = "template"
	if t == nil {
		vs.add(p, "is required")
		return
	}
	for i, s := range t.GetSteps() {
		// proto.Size cannot measure a nil element; only Go callers make one.
		if s == nil {
			vs.add(fmt.Sprintf("%s.steps[%d]", p, i), "is required")
			return
		}
	}
	// Checked first and alone: the rest of the work is bounded by it.
	if size := proto.Size(t); size > maxTemplateSize {
		vs.add(p, "is %d bytes encoded; at most %d", size, maxTemplateSize)
		return
	}

	checkName(vs, p+".namespace", t.GetNamespace(), namespaceRE)
	checkName(vs, p+".name", t.GetName(), namespaceRE)
	switch v := t.GetVersion(); {
	case v == "":
		vs.add(p+".version", "is required")
	case len(v) > maxVersionLen:
		vs.add(p+".version", "is %d bytes; at most %d", len(v), maxVersionLen)
	default:
		if _, err := semver.StrictNewVersion(v); err != nil {
			vs.add(p+".version", "must be a semantic version such as 1.2.0 or 2.0.0-rc.1 (no leading v): %v", err)
		}
	}
	checkDescription(vs, p+".description", t.GetDescription())
	if _, ok := taskerv1.IdentityStrategy_name[int32(t.GetIdentityStrategy())]; !ok {
		vs.add(p+".identity_strategy", "unknown value %d", t.GetIdentityStrategy())
	}
	if s := t.GetContextSchema(); s != nil {
		if doc, ok := checkDocument(vs, p+".context_schema", s); ok {
			if _, err := CompileSchema(doc); err != nil {
				vs.add(p+".context_schema", "is not a valid JSON Schema: %v", err)
			}
		}
	}

	policy := validateRetryPolicy(vs, p+".retry_policy", t.GetRetryPolicy(), defaultPolicy)
	checkDuration(vs, p+".lease_duration", t.GetLeaseDuration(), minLease, maxLease)
	checkDuration(vs, p+".execution_timeout", t.GetExecutionTimeout(), 0, maxTimeout)

	steps := t.GetSteps()
	switch {
	case len(steps) == 0:
		vs.add(p+".steps", "at least one step is required")
	case len(steps) > maxSteps:
		vs.add(p+".steps", "has %d steps; at most %d", len(steps), maxSteps)
	}
	edges := 0
	for _, s := range steps {
		edges += len(s.GetDependsOn())
	}
	if edges > maxEdges {
		vs.add(p+".steps", "has %d dependencies (depends_on entries in all); at most %d", edges, maxEdges)
	}
	index := make(map[string]int, len(steps))
	for i, s := range steps {
		if s.GetName() == "" {
			continue // reported as required
		}
		if j, dup := index[s.GetName()]; dup {
			vs.add(fmt.Sprintf("%s.steps[%d].name", p, i), "%q is already the name of steps[%d]", clip(s.GetName()), j)
			continue
		}
		index[s.GetName()] = i
	}
	for i, s := range steps {
		validateStep(vs, fmt.Sprintf("%s.steps[%d]", p, i), s, index, policy)
	}
	if cycle, step, dep, ok := findCycle(steps, index); ok {
		vs.add(fmt.Sprintf("%s.steps[%d].depends_on[%d]", p, step, dep), "cycle: %s", strings.Join(cycle, " -> "))
	}
}

// validateStep checks one step; index maps step names to their first
// position and inherited is the template's effective retry policy.
func validateStep(vs *violations, p string, s *taskerv1.StepTemplate, index map[string]int, inherited Policy) {
	checkName(vs, p+".name", s.GetName(), stepRE)
	switch b := s.GetBuiltin(); {
	case b == "":
		checkName(vs, p+".handler", s.GetHandler(), stepRE)
		if s.GetHttp() != nil {
			vs.add(p+".http", `is only allowed with builtin "http"`)
		}
	case s.GetHandler() != "":
		vs.add(p+".builtin", "cannot be set together with handler")
	case b != BuiltinHTTP:
		vs.add(p+".builtin", "%q is not a built-in handler; the built-ins are: %s", clip(b), BuiltinHTTP)
	case s.GetHttp() == nil:
		vs.add(p+".http", `is required with builtin "http"`)
	default:
		validateHTTP(vs, p+".http", s.GetHttp())
		if len(s.GetConfig().GetFields()) > 0 {
			vs.add(p+".config", "a built-in step takes its configuration from http, not config")
		}
	}
	checkDescription(vs, p+".description", s.GetDescription())
	seen := make(map[string]int, len(s.GetDependsOn()))
	for j, d := range s.GetDependsOn() {
		f := fmt.Sprintf("%s.depends_on[%d]", p, j)
		_, known := index[d]
		first, dup := seen[d]
		switch {
		case dup:
			vs.add(f, "%q is already listed at depends_on[%d]", clip(d), first)
			continue
		case d == s.GetName():
			vs.add(f, "a step cannot depend on itself")
		case !known:
			vs.add(f, "%q is not a step of this template", clip(d))
		}
		seen[d] = j
	}
	if c := s.GetConfig(); c != nil {
		checkDocument(vs, p+".config", c)
	}
	validateRetryPolicy(vs, p+".retry_policy", s.GetRetryPolicy(), inherited)
	checkDuration(vs, p+".lease_duration", s.GetLeaseDuration(), minLease, maxLease)
	checkDuration(vs, p+".execution_timeout", s.GetExecutionTimeout(), 0, maxTimeout)
}

// validateRetryPolicy checks a policy whose unset fields take inherited's
// values, and returns the effective policy, built from the valid fields
// only so that one bad template field is not reported again on every step.
func validateRetryPolicy(vs *violations, p string, rp *taskerv1.RetryPolicy, inherited Policy) Policy {
	eff := inherited
	if rp == nil {
		return eff
	}
	if rp.MaxAttempts != nil {
		if n := rp.GetMaxAttempts(); n < 1 || n > maxAttemptsBound {
			vs.add(p+".max_attempts", "must be between 1 and %d, got %d", maxAttemptsBound, n)
		} else {
			eff.MaxAttempts = int(n)
		}
	}
	initialOK := checkDuration(vs, p+".initial_backoff", rp.GetInitialBackoff(), 0, maxBackoffBound)
	if initialOK && rp.GetInitialBackoff() != nil {
		eff.InitialBackoff = rp.GetInitialBackoff().AsDuration()
	}
	if rp.BackoffMultiplier != nil {
		// Written so that NaN fails too.
		if m := rp.GetBackoffMultiplier(); !(m >= 1 && m <= maxMultiplier) {
			vs.add(p+".backoff_multiplier", "must be between 1 and %g, got %g", maxMultiplier, m)
		} else {
			eff.BackoffMultiplier = m
		}
	}
	maxOK := checkDuration(vs, p+".max_backoff", rp.GetMaxBackoff(), 0, maxBackoffBound)
	if maxOK && rp.GetMaxBackoff() != nil {
		eff.MaxBackoff = rp.GetMaxBackoff().AsDuration()
	}
	// Checked only where this policy sets one of the two, so that a bad
	// template policy is not reported again on every step that inherits it.
	setsBackoff := rp.GetInitialBackoff() != nil || rp.GetMaxBackoff() != nil
	if initialOK && maxOK && setsBackoff && eff.MaxBackoff < eff.InitialBackoff {
		how := "set here"
		if rp.GetMaxBackoff() == nil {
			how = "inherited"
		}
		vs.add(p+".max_backoff", "must be at least initial_backoff (%s), got %s (%s)", eff.InitialBackoff, eff.MaxBackoff, how)
	}
	if rp.Jitter != nil {
		if j := rp.GetJitter(); !(j >= 0 && j <= 1) {
			vs.add(p+".jitter", "must be between 0 and 1, got %g", j)
		} else {
			eff.Jitter = j
		}
	}
	return eff
}

func checkName(vs *violations, field, name string, re *regexp.Regexp) {
	switch {
	case name == "":
		vs.add(field, "is required")
	case !re.MatchString(name):
		vs.add(field, "%q must match %s", clip(name), re)
	}
}

// clip shortens a value quoted in a message: the error goes back to the
// client and into the log, and a value that breaks a rule may be long or
// secret.
func clip(s string) string { return fault.Clip(s) }

func checkDescription(vs *violations, field, s string) {
	switch {
	case len(s) > maxDescription:
		vs.add(field, "is %d bytes; at most %d", len(s), maxDescription)
	case !utf8.ValidString(s):
		vs.add(field, "is not valid UTF-8")
	case strings.ContainsRune(s, 0):
		vs.add(field, "must not contain NUL characters")
	}
}

// checkDuration reports whether d is unset or valid: within lo..hi and a
// whole number of milliseconds, the precision durations are stored with.
func checkDuration(vs *violations, field string, d *durationpb.Duration, lo, hi time.Duration) bool {
	if d == nil {
		return true
	}
	if err := d.CheckValid(); err != nil {
		vs.add(field, "is not a valid duration: %v", err)
		return false
	}
	got := d.AsDuration()
	switch {
	case got < lo || got > hi:
		vs.add(field, "must be between %s and %s, got %s", lo, hi, got)
		return false
	case got%time.Millisecond != 0:
		vs.add(field, "must be a whole number of milliseconds, got %s", got)
		return false
	}
	return true
}

// checkDocument checks that a Struct is JSON that PostgreSQL's jsonb can
// store (no NaN or infinity, which a Go caller can put in a Struct and
// AsMap would turn into strings, and no U+0000) of at most maxDocument
// bytes, and returns it decoded.
func checkDocument(vs *violations, field string, s *structpb.Struct) (map[string]any, bool) {
	if problem := badValue(structpb.NewStructValue(s)); problem != "" {
		vs.add(field, "%s", problem)
		return nil, false
	}
	doc := s.AsMap()
	b, err := json.Marshal(doc)
	switch {
	case err != nil:
		vs.add(field, "is not a JSON document: %v", err)
		return nil, false
	case len(b) > maxDocument:
		vs.add(field, "is %d bytes as JSON; at most %d", len(b), maxDocument)
		return nil, false
	}
	return doc, true
}

// badValue describes what keeps v from being stored as JSON, or returns "".
func badValue(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		if math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0) {
			return fmt.Sprintf("holds the number %g, which JSON cannot represent", k.NumberValue)
		}
	case *structpb.Value_StringValue:
		if strings.ContainsRune(k.StringValue, 0) {
			return "must not contain NUL characters"
		}
	case *structpb.Value_StructValue:
		for key, e := range k.StructValue.GetFields() {
			if strings.ContainsRune(key, 0) {
				return "must not contain NUL characters"
			}
			if p := badValue(e); p != "" {
				return p
			}
		}
	case *structpb.Value_ListValue:
		for _, e := range k.ListValue.GetValues() {
			if p := badValue(e); p != "" {
				return p
			}
		}
	}
	return ""
}

// findCycle looks for a cycle by depth-first search over the steps and their
// children in declaration order, so the cycle reported is always the same
// one. It returns the cycle in execution order (parent -> child), and the
// step and depends_on index of the edge that closes it. Unknown, self and
// repeated dependencies are reported elsewhere and ignored here.
func findCycle(steps []*taskerv1.StepTemplate, index map[string]int) (cycle []string, step, dep int, found bool) {
	type edge struct{ child, dep int }
	children := make([][]edge, len(steps))
	for i, s := range steps {
		if index[s.GetName()] != i {
			continue // a duplicate name; reported elsewhere
		}
		seen := map[int]bool{}
		for j, d := range s.GetDependsOn() {
			parent, ok := index[d]
			if !ok || parent == i || seen[parent] {
				continue
			}
			seen[parent] = true
			children[parent] = append(children[parent], edge{child: i, dep: j})
		}
	}

	const (
		unvisited = iota
		onPath
		done
	)
	state := make([]int, len(steps))
	var path []int
	var visit func(u int) bool
	visit = func(u int) bool {
		state[u] = onPath
		path = append(path, u)
		for _, e := range children[u] {
			switch state[e.child] {
			case onPath:
				start := len(path) - 1
				for path[start] != e.child {
					start--
				}
				for _, i := range path[start:] {
					cycle = append(cycle, steps[i].GetName())
				}
				cycle = append(cycle, steps[e.child].GetName())
				step, dep = e.child, e.dep
				return true
			case unvisited:
				if visit(e.child) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		state[u] = done
		return false
	}
	for i := range steps {
		if state[i] == unvisited && visit(i) {
			return cycle, step, dep, true
		}
	}
	return nil, 0, 0, false
}
