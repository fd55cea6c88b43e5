package events_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
)

func TestParseTypePattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		prefix   string
		wildcard bool
	}{
		{"*", "", true},
		{"step.*", "step.", true},
		{"step.completed", "step.completed", false},
		{"billing.v2.invoice_sent", "billing.v2.invoice_sent", false},
		{"billing.v2.*", "billing.v2.", true},
		{"a.b.c.d.e.f.g.h", "a.b.c.d.e.f.g.h", false},
		{"a.b.c.d.e.f.g.*", "a.b.c.d.e.f.g.", true},
	} {
		p, err := events.ParseTypePattern(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, events.TypePattern{Prefix: tc.prefix, Wildcard: tc.wildcard}, p, tc.in)
		require.Equal(t, tc.in, p.String())
	}
	for _, in := range []string{
		"", "step", "Step.completed", "step.*.completed", "step*", "step.comp*", "*.completed",
		"step..completed", ".step", "step.", "step.**", "**", "step.completed*", "step-x.y",
		"step.compléted", "a.b.c.d.e.f.g.h.i", "a.b.c.d.e.f.g.h.*", strings.Repeat("a", 100) + "." + strings.Repeat("b", 100),
	} {
		_, err := events.ParseTypePattern(in)
		require.Error(t, err, "%q", in)
	}

	p, _ := events.ParseTypePattern("step.*")
	require.True(t, p.Match("step.completed"))
	require.False(t, p.Match("step"))
	require.False(t, p.Match("stepx.completed"))
	require.False(t, p.Match("steps.completed"))
}

func TestParseFilter(t *testing.T) {
	t.Parallel()
	_, err := events.ParseFilter(events.Filter{})
	require.NoError(t, err)

	_, err = events.ParseFilter(events.Filter{
		TaskID:    "not-a-uuid",
		Namespace: strings.Repeat("n", 300),
		Types:     []string{"step.*", "Step.completed", "*", "step"},
	})
	require.Equal(t, []string{"filter.namespace", "filter.task_id", "filter.types[1]", "filter.types[3]"}, violations(t, err))

	_, err = events.ParseFilter(events.Filter{TaskID: "{" + uuid.NewString() + "}"})
	require.Equal(t, []string{"filter.task_id"}, violations(t, err), "one spelling of ids only")

	_, err = events.ParseFilter(events.Filter{Types: make([]string, events.MaxTypePatterns+1)})
	require.Equal(t, []string{"filter.types"}, violations(t, err))
}

func TestMatcher(t *testing.T) {
	t.Parallel()
	task := uuid.New()
	ev := &events.Stored{Type: "step.completed", Namespace: "shop", TemplateName: "order", CorrelationID: "c1", TaskID: &task}
	for _, tc := range []struct {
		f    events.Filter
		want bool
	}{
		{events.Filter{}, true},
		{events.Filter{Types: []string{"*"}}, true},
		{events.Filter{Types: []string{"task.*", "step.*"}}, true},
		{events.Filter{Types: []string{"task.*", "step.failed"}}, false},
		{events.Filter{Namespace: "shop", TemplateName: "order", CorrelationID: "c1", TaskID: task.String()}, true},
		{events.Filter{Namespace: "other"}, false},
		{events.Filter{TemplateName: "other"}, false},
		{events.Filter{CorrelationID: "other"}, false},
		{events.Filter{TaskID: uuid.NewString()}, false},
		{events.Filter{TaskID: strings.ToUpper(task.String())}, true},
	} {
		m, err := events.ParseFilter(tc.f)
		require.NoError(t, err)
		require.Equal(t, tc.want, m.Match(ev), "%+v", tc.f)
		require.Equal(t, tc.f, m.Filter())
	}
	m, err := events.ParseFilter(events.Filter{TaskID: task.String()})
	require.NoError(t, err)
	require.False(t, m.Match(&events.Stored{Type: "billing.sent"}), "an event without a task does not match a task filter")
}

// violations returns the fields named by an InvalidArgument error.
func violations(t *testing.T, err error) []string {
	t.Helper()
	fe, ok := fault.As(err)
	require.True(t, ok, "not a fault: %v", err)
	require.Equal(t, fault.InvalidArgument, fe.Code)
	var fields []string
	for _, v := range fe.Violations {
		fields = append(fields, v.Field)
	}
	return fields
}

// FuzzTypePattern checks that the parser never panics, accepts only
// patterns of the documented grammar, and matches what the grammar says.
func FuzzTypePattern(f *testing.F) {
	for _, s := range []string{"*", "step.*", "step.completed", "step", "step.*.x", "a_b.c9", "", ".", "é.x", "STEP.*", "a.b.c.d.e.f.g.h.*"} {
		f.Add(s, "step.completed")
	}
	f.Fuzz(func(t *testing.T, s, typ string) {
		p, err := events.ParseTypePattern(s)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		require.Equal(t, s, p.String(), "a pattern prints as written")
		require.LessOrEqual(t, len(s), 128)
		body := s
		if p.Wildcard {
			require.True(t, s == "*" || strings.HasSuffix(s, ".*"))
			body = strings.TrimSuffix(strings.TrimSuffix(s, "*"), ".")
		}
		if body != "" {
			parts := strings.Split(body, ".")
			if !p.Wildcard {
				require.GreaterOrEqual(t, len(parts), 2, "an exact type has two parts")
			}
			for _, part := range parts {
				require.NotEmpty(t, part)
				for _, r := range part {
					require.True(t, r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_', "%q in %q", r, s)
				}
			}
		}
		want := typ == s
		if p.Wildcard {
			want = strings.HasPrefix(typ, p.Prefix)
		}
		require.Equal(t, want, p.Match(typ))
		if p.Wildcard {
			require.True(t, p.Match(p.Prefix+"x"))
		} else {
			require.True(t, p.Match(s))
			require.False(t, p.Match(s+"x"))
		}
	})
}
