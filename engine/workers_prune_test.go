package engine_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent/schema"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestPruneWorkers: the reaper forgets workers not seen for a week, keeps
// the others, and prunes at most once a minute.
func TestPruneWorkers(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		now := time.Now().UTC().Truncate(time.Microsecond)
		refs := []schema.HandlerRef{{Namespace: "ns", Handler: "h"}}
		for id, seen := range map[string]time.Time{
			"gone":   now.Add(-8 * 24 * time.Hour),
			"recent": now.Add(-6 * 24 * time.Hour),
			"live":   now,
		} {
			require.NoError(t, db.Client.Worker.Create().SetID(id).SetHandlers(refs).SetFirstSeenAt(seen).SetLastSeenAt(seen).Exec(b.ctx))
		}
		ids := func() []string {
			ids, err := db.Client.Worker.Query().IDs(b.ctx)
			require.NoError(t, err)
			return ids
		}
		require.NoError(t, engine.PruneWorkers(b.eng, b.ctx, now))
		require.ElementsMatch(t, []string{"recent", "live"}, ids())

		// A week later by the clock, but within a minute of the last
		// pass: nothing is pruned yet.
		require.NoError(t, engine.PruneWorkers(b.eng, b.ctx, now.Add(30*time.Second)))
		require.ElementsMatch(t, []string{"recent", "live"}, ids())
		require.NoError(t, engine.PruneWorkers(b.eng, b.ctx, now.Add(2*24*time.Hour)))
		require.ElementsMatch(t, []string{"live"}, ids())
	})
}
