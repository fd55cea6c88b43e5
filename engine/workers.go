package engine

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/namespace"
	"github.com/taskerhq/tasker/ent/schema"
	"github.com/taskerhq/tasker/ent/steptemplate"
	"github.com/taskerhq/tasker/ent/tasktemplate"
	"github.com/taskerhq/tasker/ent/worker"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
)

// workerSeenEvery bounds how often one worker's last-seen time is written:
// polls and heartbeats are frequent, and a stale-by-seconds time is enough
// for ListHandlers.
const workerSeenEvery = 5 * time.Second

// workerRetention is how long a worker that stopped calling is remembered
// (ListHandlers shows when a handler was last served). The reaper deletes
// older rows, at most once per workerPruneEvery, so a fleet of short-lived
// worker ids (a pod name each) does not grow the table without bound.
const (
	workerRetention  = 7 * 24 * time.Hour
	workerPruneEvery = time.Minute
)

// maxCachedWorkers bounds the workers remembered in memory: an entry is a
// few hundred bytes (the handler set is part of it), and anyone may claim
// under a new worker id.
const maxCachedWorkers = 10_000

// workerCache remembers what was last written per worker, so most polls
// and heartbeats write nothing. It forgets a worker not seen for
// workerSeenEvery (its next call writes its last-seen time anyway, so
// forgetting costs nothing) and holds at most maxCachedWorkers.
type workerCache struct {
	mu   sync.Mutex
	seen map[string]workerSeen
	// swept is when stale entries were last removed.
	swept time.Time
}

// put remembers w for id; the caller holds mu.
func (c *workerCache) put(id string, w workerSeen) {
	if _, ok := c.seen[id]; !ok && len(c.seen) >= maxCachedWorkers {
		// A sweep is O(n): at most one per workerSeenEvery, when full.
		if w.at.Sub(c.swept) >= workerSeenEvery {
			c.swept = w.at
			for k, v := range c.seen {
				if w.at.Sub(v.at) >= workerSeenEvery {
					delete(c.seen, k)
				}
			}
		}
		// Still full of live workers: forget any one of them; it costs
		// that worker one extra write.
		for k := range c.seen {
			if len(c.seen) < maxCachedWorkers {
				break
			}
			delete(c.seen, k)
		}
	}
	c.seen[id] = w
}

type workerSeen struct {
	handlers string
	at       time.Time
}

func handlerKey(hs []HandlerRef) string {
	keys := make([]string, len(hs))
	for i, h := range hs {
		keys[i] = h.Namespace + "\x00" + h.Handler
	}
	sort.Strings(keys)
	return strings.Join(slices.Compact(keys), "\x01")
}

// noteWorker records that workerID served hs (nil: a heartbeat, the set
// unchanged). A new worker or a changed handler set is written at once with
// a registry.worker_seen event; otherwise the last-seen time is refreshed
// at most every workerSeenEvery. Failures are logged, never returned: they
// must not fail the claim or heartbeat that carried them.
func (e *Engine) noteWorker(ctx context.Context, workerID string, hs []HandlerRef) {
	now := e.now()
	key := ""
	if hs != nil {
		key = handlerKey(hs)
	}
	e.workers.mu.Lock()
	prev, known := e.workers.seen[workerID]
	if known && (hs == nil || prev.handlers == key) && now.Sub(prev.at) < workerSeenEvery {
		e.workers.mu.Unlock()
		return
	}
	if hs == nil {
		key = prev.handlers
	}
	e.workers.put(workerID, workerSeen{handlers: key, at: now})
	e.workers.mu.Unlock()

	err := e.db.Tx(storage.TxName(ctx, "NoteWorker"), func(tx *ent.Tx) error {
		w, err := tx.Worker.Get(ctx, workerID)
		if err != nil && !ent.IsNotFound(err) {
			return err
		}
		if hs == nil {
			if w == nil {
				return nil // a heartbeat from a worker that never claimed here
			}
			return tx.Worker.UpdateOne(w).SetLastSeenAt(now).Exec(ctx)
		}
		refs := make([]schema.HandlerRef, len(hs))
		for i, h := range hs {
			refs[i] = schema.HandlerRef{Namespace: h.Namespace, Handler: h.Handler}
		}
		switch {
		case w == nil:
			if err := tx.Worker.Create().SetID(workerID).SetHandlers(refs).SetFirstSeenAt(now).SetLastSeenAt(now).Exec(ctx); err != nil {
				return err
			}
		case handlerKeyOf(w.Handlers) != key:
			if err := tx.Worker.UpdateOne(w).SetHandlers(refs).SetLastSeenAt(now).Exec(ctx); err != nil {
				return err
			}
		default:
			return tx.Worker.UpdateOne(w).SetLastSeenAt(now).Exec(ctx)
		}
		return events.Append(ctx, tx, e.db.SQL(), events.Event{
			Type: events.RegistryWorkerSeen, CorrelationID: correlation.FromContext(ctx), At: now,
			Payload: map[string]any{"worker_id": workerID, "handlers": refs, "first_seen": w == nil},
		})
	})
	if err != nil {
		e.workers.mu.Lock()
		delete(e.workers.seen, workerID) // try again next time
		e.workers.mu.Unlock()
		e.log.WarnContext(ctx, "recording worker failed", slog.String("worker_id", workerID), slog.Any("error", err))
		return
	}
	e.appended()
}

func handlerKeyOf(refs []schema.HandlerRef) string {
	hs := make([]HandlerRef, len(refs))
	for i, r := range refs {
		hs[i] = HandlerRef{Namespace: r.Namespace, Handler: r.Handler}
	}
	return handlerKey(hs)
}

// WorkerInfo is one worker serving a handler.
type WorkerInfo struct {
	ID       string
	LastSeen time.Time
}

// HandlerInfo reports one handler of a namespace.
type HandlerInfo struct {
	HandlerRef
	UsedByTemplates bool
	// Workers seen within the window, most recent first.
	Workers []WorkerInfo
	// LastSeen is the last time any worker served it; zero when none did.
	LastSeen time.Time
	// Builtin is set for a built-in handler ("builtin:http"), served by the
	// servers themselves.
	Builtin bool
}

// ListHandlers reports, per namespace, the handlers templates use and the
// workers that served them within activeWithin.
func (e *Engine) ListHandlers(ctx context.Context, ns string, activeWithin time.Duration) ([]HandlerInfo, error) {
	if activeWithin == 0 {
		activeWithin = time.Minute
	}
	if activeWithin < time.Second || activeWithin > 24*time.Hour {
		return nil, fault.Invalid("active_within", "must be between 1s and 24h")
	}
	byRef := map[HandlerRef]*HandlerInfo{}
	get := func(r HandlerRef) *HandlerInfo {
		if h, ok := byRef[r]; ok {
			return h
		}
		_, builtin := registry.IsBuiltinHandler(r.Handler)
		h := &HandlerInfo{HandlerRef: r, Builtin: builtin}
		byRef[r] = h
		return h
	}
	q := e.db.Reader.StepTemplate.Query()
	if ns != "" {
		q = q.Where(steptemplate.HasTemplateWith(tasktemplate.HasNamespaceWith(namespace.Name(ns))))
	}
	used, err := q.WithTemplate(func(tq *ent.TaskTemplateQuery) { tq.WithNamespace() }).All(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range used {
		get(HandlerRef{Namespace: st.Edges.Template.Edges.Namespace.Name, Handler: st.Handler}).UsedByTemplates = true
	}
	workers, err := e.db.Reader.Worker.Query().All(ctx)
	if err != nil {
		return nil, err
	}
	cutoff := e.now().Add(-activeWithin)
	for _, w := range workers {
		for _, r := range w.Handlers {
			if ns != "" && r.Namespace != ns {
				continue
			}
			h := get(HandlerRef{Namespace: r.Namespace, Handler: r.Handler})
			if w.LastSeenAt.After(h.LastSeen) {
				h.LastSeen = w.LastSeenAt
			}
			if w.LastSeenAt.After(cutoff) {
				h.Workers = append(h.Workers, WorkerInfo{ID: w.ID, LastSeen: w.LastSeenAt})
			}
		}
	}
	out := make([]HandlerInfo, 0, len(byRef))
	for _, h := range byRef {
		sort.Slice(h.Workers, func(i, j int) bool { return h.Workers[i].LastSeen.After(h.Workers[j].LastSeen) })
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Handler < out[j].Handler
	})
	return out, nil
}

// pruneWorkers deletes the workers not seen for workerRetention before now,
// unless it did so less than workerPruneEvery ago. Only the reaper's
// goroutine calls it.
func (e *Engine) pruneWorkers(ctx context.Context, now time.Time) error {
	if now.Sub(e.workersPruned) < workerPruneEvery {
		return nil
	}
	e.workersPruned = now
	var n int
	err := e.db.Tx(ctx, func(tx *ent.Tx) (err error) {
		n, err = tx.Worker.Delete().Where(worker.LastSeenAtLT(now.Add(-workerRetention))).Exec(ctx)
		return err
	})
	if n > 0 && err == nil {
		e.log.InfoContext(ctx, "forgot workers not seen for a week", slog.Int("workers", n))
	}
	return err
}

// WorkerHeartbeat refreshes a worker's last-seen time from a heartbeat.
func (e *Engine) WorkerHeartbeat(ctx context.Context, workerID string) {
	if checkWorkerID(workerID) == "" {
		e.noteWorker(ctx, workerID, nil)
	}
}

// NamespacesUsing returns, in order, the namespaces some template of which
// has a step of handler: the namespaces the in-process worker claims a
// built-in handler's steps in.
func (e *Engine) NamespacesUsing(ctx context.Context, handler string) ([]string, error) {
	return e.db.Reader.Namespace.Query().
		Where(namespace.HasTemplatesWith(tasktemplate.HasStepsWith(steptemplate.Handler(handler)))).
		Order(ent.Asc(namespace.FieldName)).
		Select(namespace.FieldName).
		Strings(ctx)
}
