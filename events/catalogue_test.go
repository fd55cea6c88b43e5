package events_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
)

func TestCatalogue(t *testing.T) {
	t.Parallel()
	cat := events.Catalogue()
	builtIn := []string{
		events.TaskCreated, events.TaskStarted, events.TaskCompleted, events.TaskFailed, events.TaskResumed,
		events.TaskResolvedManually, events.TaskCancelled,
		events.StepEnqueued, events.StepClaimed, events.StepCompleted, events.StepRetryScheduled, events.StepFailed,
		events.StepReleased, events.StepRetryRequested, events.StepResolvedManually, events.StepCancelled,
		events.WorkflowDuplicateDetected,
		events.RegistryTemplateRegistered, events.RegistryTemplateReplaced, events.RegistryWorkerSeen,
	}
	var names []string
	for _, typ := range cat {
		names = append(names, typ.Name)
		require.NotEmpty(t, typ.Description, typ.Name)
		require.NotEmpty(t, typ.Fields, "%s: every built-in event says something", typ.Name)
		seen := map[string]bool{}
		for _, f := range typ.Fields {
			require.False(t, seen[f.Name], "%s: field %s twice", typ.Name, f.Name)
			seen[f.Name] = true
			require.Contains(t, []string{events.JSONString, events.JSONInteger, events.JSONNumber, events.JSONBoolean, events.JSONObject, events.JSONArray}, f.Type, "%s.%s", typ.Name, f.Name)
			require.NotEmpty(t, f.Description, "%s.%s", typ.Name, f.Name)
		}
		require.NoError(t, func() error {
			_, err := events.ParseTypePattern(typ.Name)
			return err
		}(), "a built-in type is a valid exact pattern")
		require.Error(t, events.ValidateCustomType(typ.Name), "%s: built-in types are reserved", typ.Name)
		got, ok := events.LookupType(typ.Name)
		require.True(t, ok)
		require.Equal(t, typ, got)
	}
	require.True(t, slices.IsSorted(names), "ordered by name")
	require.ElementsMatch(t, builtIn, names, "every constant, nothing else")

	// Callers get copies.
	cat[0].Fields[0].Name = "changed"
	require.NotEqual(t, "changed", events.Catalogue()[0].Fields[0].Name)
	_, ok := events.LookupType("billing.invoice_sent")
	require.False(t, ok)
}

func TestValidateCustomType(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"billing.invoice_sent", "a.b", "a1.b_2.c3", "a.b.c.d.e.f.g.h", "tasks.custom", "steps.x", "taskx.y",
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 64),
	} {
		require.NoError(t, events.ValidateCustomType(ok), ok)
	}
	for _, bad := range []string{
		"", "billing", "Billing.sent", "billing.Sent", "billing..sent", ".billing", "billing.", "billing.*", "*",
		"billing.invoice-sent", "billing.invoice sent", "billing.é", "a.b.c.d.e.f.g.h.i",
		"task.custom", "step.custom", "workflow.custom", "registry.custom", "task.created",
		strings.Repeat("a", 64) + "." + strings.Repeat("b", 64),
	} {
		require.Error(t, events.ValidateCustomType(bad), "%q", bad)
	}
}
