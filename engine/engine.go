package engine

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
)

// Options are the optional settings of an Engine.
type Options struct {
	// OnAppend is called after every commit that appended events, so the
	// event log's readers in this process wake at once.
	OnAppend func()
	// IdempotencyWindow is how long an idempotency key stays bound to the
	// task it created; after it the key may create a new task. Default 24h.
	IdempotencyWindow time.Duration
	// Metrics, when set, is told what each commit changed.
	Metrics Recorder
}

// Engine runs tasks on one database.
type Engine struct {
	db        *storage.DB
	templates *registry.Store
	log       *slog.Logger
	opts      Options
	schemas   *schemaCache
	now       func() time.Time
	// claimers are the long-polls, woken when steps become claimable.
	claimers claimWaits
	// workNotifier tells the other replicas (PostgreSQL) that steps
	// became claimable.
	workNotifier *storage.Notifier
	// leases wakes the reaper when a claim sets a lease that may expire
	// before the one it sleeps until.
	leases  broadcast
	workers workerCache
	// reaperWake is when the reaper next wakes (Unix nanoseconds).
	reaperWake atomic.Int64
	// workersPruned is when the reaper last deleted forgotten workers.
	workersPruned time.Time
}

// New returns an engine over db that resolves templates with templates.
func New(db *storage.DB, templates *registry.Store, log *slog.Logger, opts Options) *Engine {
	if opts.IdempotencyWindow <= 0 {
		opts.IdempotencyWindow = 24 * time.Hour
	}
	return &Engine{
		db:           db,
		templates:    templates,
		log:          log,
		opts:         opts,
		schemas:      newSchemaCache(),
		workNotifier: db.NewNotifier(workChannel, log),
		workers:      workerCache{seen: map[string]workerSeen{}},
		// Microseconds: what PostgreSQL keeps, so times the engine answers
		// with are the ones a later read returns.
		now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}
}

// SleepingClaimers is how many ClaimSteps long-polls of this process have
// found nothing to claim and are waiting for work to be committed (here or,
// on PostgreSQL, by another replica). Tests wait on it instead of sleeping.
func (e *Engine) SleepingClaimers() int {
	return e.claimers.sleeping()
}

func (e *Engine) appended() {
	if e.opts.OnAppend != nil {
		e.opts.OnAppend()
	}
}
