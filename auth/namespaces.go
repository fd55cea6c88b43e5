package auth

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/storage"
)

// Namespaces resolves the namespace of a task or step id. A task's or
// step's namespace never changes, so answers are cached without expiry, in
// a bounded cache.
type Namespaces struct {
	db  *storage.DB
	max int

	mu    sync.Mutex
	tasks map[uuid.UUID]string
	steps map[uuid.UUID]string
}

// NewNamespaces returns a resolver over db caching at most maxEntries ids
// of each kind; 0 for the default of 100,000.
func NewNamespaces(db *storage.DB, maxEntries int) *Namespaces {
	if maxEntries <= 0 {
		maxEntries = 100_000
	}
	return &Namespaces{db: db, max: maxEntries, tasks: make(map[uuid.UUID]string), steps: make(map[uuid.UUID]string)}
}

// OfTask returns the namespace of task id; ok is false when id is
// malformed or no such task exists, which the call itself then reports.
func (n *Namespaces) OfTask(ctx context.Context, id string) (ns string, ok bool, err error) {
	return n.resolve(ctx, id, n.tasks, func(ctx context.Context, u uuid.UUID) (string, error) {
		return n.db.Reader.Task.Query().Where(task.ID(u)).Select(task.FieldNamespace).String(ctx)
	})
}

// OfStep returns the namespace of step id, like OfTask.
func (n *Namespaces) OfStep(ctx context.Context, id string) (ns string, ok bool, err error) {
	return n.resolve(ctx, id, n.steps, func(ctx context.Context, u uuid.UUID) (string, error) {
		return n.db.Reader.Step.Query().Where(step.ID(u)).Select(step.FieldNamespace).String(ctx)
	})
}

// RememberStep records the namespace of a step the caller has just seen,
// such as one it handed out in a claim, so the calls that follow cost no
// lookup.
func (n *Namespaces) RememberStep(id, ns string) {
	u, err := uuid.Parse(id)
	if err != nil {
		return
	}
	n.mu.Lock()
	n.put(n.steps, u, ns)
	n.mu.Unlock()
}

func (n *Namespaces) resolve(ctx context.Context, id string, cache map[uuid.UUID]string,
	query func(context.Context, uuid.UUID) (string, error),
) (string, bool, error) {
	u, parseErr := uuid.Parse(id)
	if parseErr != nil {
		// Not an id at all: the call's own validation says so.
		return "", false, nil //nolint:nilerr // a malformed id is the call's to report
	}
	n.mu.Lock()
	ns, ok := cache[u]
	n.mu.Unlock()
	if ok {
		return ns, true, nil
	}
	ns, err := query(ctx, u)
	if ent.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	n.mu.Lock()
	n.put(cache, u, ns)
	n.mu.Unlock()
	return ns, true, nil
}

// put adds to a cache under n.mu, dropping an arbitrary entry when it is
// full: a dropped id only costs a lookup.
func (n *Namespaces) put(cache map[uuid.UUID]string, u uuid.UUID, ns string) {
	if len(cache) >= n.max {
		for k := range cache {
			delete(cache, k)
			break
		}
	}
	cache[u] = ns
}
