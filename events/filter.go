package events

import (
	"strconv"
	"strings"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/predicate"
	"github.com/taskerhq/tasker/fault"
)

// Bounds of a Filter: every input is bounded, so a filter costs a known
// amount to check, to query and to match.
const (
	// MaxTypePatterns bounds Filter.Types.
	MaxTypePatterns = 32
	// maxTypeLen bounds one type pattern; custom types are shorter still.
	maxTypeLen = 128
	// maxTypeParts bounds the dotted parts of a pattern, "*" included;
	// custom types have at most 8.
	maxTypeParts = 8
	// maxFilterValueLen bounds the plain string fields of a Filter.
	maxFilterValueLen = 256
)

// Filter selects events, as requested by a reader: empty fields match
// everything, set fields must all match. Validate it with ParseFilter.
type Filter struct {
	Namespace     string
	TemplateName  string
	TaskID        string
	CorrelationID string
	// Types are type patterns (see ParseTypePattern); an event matches
	// when it matches any of them. Empty matches every type.
	Types []string
}

// TypePattern is a parsed event type pattern: an exact type
// ("step.completed"), a prefix wildcard ("step.*", every type that starts
// with "step.") or "*" (every type).
type TypePattern struct {
	// Prefix is the exact type, or for a wildcard what a type must start
	// with, its dot included ("step."); "" for "*".
	Prefix string
	// Wildcard says Prefix is a prefix rather than the whole type.
	Wildcard bool
}

// ParseTypePattern parses s: lowercase dotted parts of [a-z0-9_], at most 8
// and 128 bytes in all, where "*" may only be the whole last part. An exact
// pattern has at least two parts, like every event type; a single word
// such as "step" is refused rather than silently matching nothing. The
// error is a plain description, for the caller to attach to its field.
func ParseTypePattern(s string) (TypePattern, error) {
	switch {
	case s == "":
		return TypePattern{}, patternError("is empty")
	case s == "*":
		return TypePattern{Wildcard: true}, nil
	case len(s) > maxTypeLen:
		return TypePattern{}, patternError("is longer than " + strconv.Itoa(maxTypeLen) + " bytes")
	}
	parts := strings.Split(s, ".")
	if len(parts) > maxTypeParts {
		return TypePattern{}, patternError("has more than " + strconv.Itoa(maxTypeParts) + " dotted parts")
	}
	wildcard := parts[len(parts)-1] == "*"
	if wildcard {
		parts = parts[:len(parts)-1]
	}
	for _, p := range parts {
		if p == "" {
			return TypePattern{}, patternError("has an empty part; use lowercase dotted parts like \"step.completed\" or \"step.*\"")
		}
		for _, r := range p {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			case r == '*':
				return TypePattern{}, patternError("may use \"*\" only as the whole last part, like \"step.*\"")
			default:
				return TypePattern{}, patternError("may hold only lowercase letters, digits, \"_\" and dots, like \"step.completed\" or \"step.*\"")
			}
		}
	}
	if wildcard {
		return TypePattern{Prefix: strings.Join(parts, ".") + ".", Wildcard: true}, nil
	}
	if len(parts) < 2 {
		return TypePattern{}, patternError("names no event type: types have at least two parts; did you mean \"" + s + ".*\"?")
	}
	return TypePattern{Prefix: s}, nil
}

// patternError is the description ParseTypePattern returns.
type patternError string

func (e patternError) Error() string { return string(e) }

// String returns the pattern as written.
func (p TypePattern) String() string {
	if p.Wildcard {
		return p.Prefix + "*"
	}
	return p.Prefix
}

// Match reports whether an event of type typ matches p.
func (p TypePattern) Match(typ string) bool {
	if p.Wildcard {
		return strings.HasPrefix(typ, p.Prefix)
	}
	return typ == p.Prefix
}

// Matcher is a validated Filter, made by ParseFilter: List turns it into SQL
// and a subscriber's fan-out matches committed events against it in memory;
// both select the same events.
type Matcher struct {
	filter   Filter
	taskID   *uuid.UUID
	patterns []TypePattern
	// allTypes is set when some pattern is "*", or there are none.
	allTypes bool
}

// ParseFilter validates f and returns its Matcher. Errors are
// InvalidArgument naming the request field: "filter.task_id" (not a UUID),
// "filter.types" (more than MaxTypePatterns), "filter.types[i]" (a bad
// pattern), "filter.namespace" and the other strings (too long). Every bad
// field is reported at once.
func ParseFilter(f Filter) (*Matcher, error) {
	m := &Matcher{filter: f, allTypes: len(f.Types) == 0}
	var vs []fault.Violation
	bad := func(field, desc string) { vs = append(vs, fault.Violation{Field: field, Description: desc}) }
	for _, s := range []struct{ field, value string }{
		{"filter.namespace", f.Namespace},
		{"filter.template_name", f.TemplateName},
		{"filter.correlation_id", f.CorrelationID},
	} {
		if len(s.value) > maxFilterValueLen {
			bad(s.field, "is longer than "+strconv.Itoa(maxFilterValueLen)+" bytes")
		}
	}
	if f.TaskID != "" {
		id, err := uuid.Parse(f.TaskID)
		if err != nil || len(f.TaskID) != 36 {
			// uuid.Parse also takes braces, URNs and bare hex; ids are
			// written one way only.
			bad("filter.task_id", "is not a task id (a UUID like 123e4567-e89b-12d3-a456-426614174000)")
		} else {
			m.taskID = &id
		}
	}
	if len(f.Types) > MaxTypePatterns {
		bad("filter.types", "has "+strconv.Itoa(len(f.Types))+" patterns; at most "+strconv.Itoa(MaxTypePatterns)+" are allowed")
	} else {
		for i, s := range f.Types {
			p, err := ParseTypePattern(s)
			if err != nil {
				bad("filter.types["+strconv.Itoa(i)+"]", strconv.Quote(truncate(s, 64))+" "+err.Error())
				continue
			}
			if p.Wildcard && p.Prefix == "" {
				m.allTypes = true
			}
			m.patterns = append(m.patterns, p)
		}
	}
	if len(vs) > 0 {
		return nil, fault.Invalids(vs)
	}
	return m, nil
}

// truncate shortens s for quoting in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Filter returns the filter m was parsed from.
func (m *Matcher) Filter() Filter { return m.filter }

// Match reports whether ev is selected.
func (m *Matcher) Match(ev *Stored) bool {
	f := m.filter
	switch {
	case f.Namespace != "" && ev.Namespace != f.Namespace,
		f.TemplateName != "" && ev.TemplateName != f.TemplateName,
		f.CorrelationID != "" && ev.CorrelationID != f.CorrelationID,
		m.taskID != nil && (ev.TaskID == nil || *ev.TaskID != *m.taskID):
		return false
	}
	if m.allTypes {
		return true
	}
	for _, p := range m.patterns {
		if p.Match(ev.Type) {
			return true
		}
	}
	return false
}

// predicates returns m as SQL predicates, the same selection as Match.
func (m *Matcher) predicates() []predicate.Event {
	f := m.filter
	var ps []predicate.Event
	if f.Namespace != "" {
		ps = append(ps, event.Namespace(f.Namespace))
	}
	if f.TemplateName != "" {
		ps = append(ps, event.TemplateName(f.TemplateName))
	}
	if f.CorrelationID != "" {
		ps = append(ps, event.CorrelationID(f.CorrelationID))
	}
	if m.taskID != nil {
		ps = append(ps, event.TaskID(*m.taskID))
	}
	if m.allTypes {
		return ps
	}
	var exact []string
	var ors []predicate.Event
	for _, p := range m.patterns {
		if p.Wildcard {
			ors = append(ors, typeHasPrefix(p.Prefix))
		} else {
			exact = append(exact, p.Prefix)
		}
	}
	if len(exact) > 0 {
		ors = append(ors, event.TypeIn(exact...))
	}
	return append(ps, event.Or(ors...))
}

// typeHasPrefix selects types that start with prefix. Not LIKE: "_" is a
// LIKE wildcard, SQLite's LIKE ignores ASCII case and needs an explicit
// ESCAPE; and not a range (>= 'step.' AND < 'step/'), which a linguistic
// PostgreSQL collation orders differently from bytes. substr and = compare
// exactly on both dialects. The length is our own integer, so it is
// written inline.
func typeHasPrefix(prefix string) predicate.Event {
	return func(s *sql.Selector) {
		s.Where(sql.P(func(b *sql.Builder) {
			b.WriteString("substr(").Ident(s.C(event.FieldType)).
				WriteString(", 1, " + strconv.Itoa(len(prefix)) + ") = ").Arg(prefix)
		}))
	}
}
