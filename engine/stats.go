package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/namespace"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/tasktemplate"
)

// QueueDepth is how many steps of one handler are in one queue state.
type QueueDepth struct {
	HandlerRef
	// State is "enqueued" (claimable now or at its run_at),
	// "waiting_for_retry" (claimable after its backoff) or "in_progress"
	// (claimed, under a lease).
	State string
	Count int64
}

// QueueDepths counts the steps of every handler that are enqueued, waiting
// for a retry or in progress. It reads the partial indexes that hold only
// claimable and leased steps, so its cost follows the size of the queue,
// not of the history: finished steps are never read.
func (e *Engine) QueueDepths(ctx context.Context) ([]QueueDepth, error) {
	type row struct {
		Namespace string `json:"namespace"`
		Handler   string `json:"handler"`
		State     string `json:"state"`
		Count     int64  `json:"count"`
	}
	var claimable, leased []row
	err := e.db.Reader.Step.Query().Where(step.ClaimableAtNotNil()).
		GroupBy(step.FieldNamespace, step.FieldHandler, step.FieldState).Aggregate(ent.Count()).Scan(ctx, &claimable)
	if err != nil {
		return nil, fmt.Errorf("engine: count claimable steps: %w", e.db.InterpretError(err))
	}
	err = e.db.Reader.Step.Query().Where(step.LeaseExpiresAtNotNil()).
		GroupBy(step.FieldNamespace, step.FieldHandler, step.FieldState).Aggregate(ent.Count()).Scan(ctx, &leased)
	if err != nil {
		return nil, fmt.Errorf("engine: count leased steps: %w", e.db.InterpretError(err))
	}
	out := make([]QueueDepth, 0, len(claimable)+len(leased))
	for _, r := range append(claimable, leased...) {
		out = append(out, QueueDepth{HandlerRef: HandlerRef{Namespace: r.Namespace, Handler: r.Handler}, State: r.State, Count: r.Count})
	}
	return out, nil
}

// NamespaceTemplates counts the templates of one namespace.
type NamespaceTemplates struct {
	Namespace string
	// Templates counts distinct names, Versions every registered version.
	Templates, Versions int64
}

// RegistryStats is what the registry holds and who serves it.
type RegistryStats struct {
	Namespaces []NamespaceTemplates
	// Handlers are the handlers templates use or workers serve, with the
	// workers seen within the window.
	Handlers []HandlerInfo
}

// RegistryStats counts templates and versions per namespace and reports
// every handler with the workers seen within activeWithin (a minute when
// 0). Handlers with UsedByTemplates and no Workers are the gap an operator
// must see: steps of theirs wait for ever.
func (e *Engine) RegistryStats(ctx context.Context, activeWithin time.Duration) (RegistryStats, error) {
	namespaces, err := e.db.Reader.Namespace.Query().Select(namespace.FieldName).All(ctx)
	if err != nil {
		return RegistryStats{}, fmt.Errorf("engine: list namespaces: %w", e.db.InterpretError(err))
	}
	templates, err := e.db.Reader.TaskTemplate.Query().Select(tasktemplate.FieldNamespaceID, tasktemplate.FieldName).All(ctx)
	if err != nil {
		return RegistryStats{}, fmt.Errorf("engine: list templates: %w", e.db.InterpretError(err))
	}
	var stats RegistryStats
	index := map[int]int{}
	for _, n := range namespaces {
		index[n.ID] = len(stats.Namespaces)
		stats.Namespaces = append(stats.Namespaces, NamespaceTemplates{Namespace: n.Name})
	}
	names := map[string]bool{}
	for _, t := range templates {
		i, ok := index[t.NamespaceID]
		if !ok {
			continue // registered after the namespaces were read
		}
		n := &stats.Namespaces[i]
		n.Versions++
		if k := n.Namespace + "\x00" + t.Name; !names[k] {
			names[k] = true
			n.Templates++
		}
	}
	if stats.Handlers, err = e.ListHandlers(ctx, "", activeWithin); err != nil {
		return RegistryStats{}, err
	}
	return stats, nil
}
