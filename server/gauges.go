package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
)

// DefaultStatsInterval is Config.StatsInterval when it is 0.
const DefaultStatsInterval = 5 * time.Second

// activeWorkerWindow is how recently a worker must have claimed or
// heartbeated to count as serving its handlers.
const activeWorkerWindow = time.Minute

// dbStats caches what the gauges read from the database with queries
// that cost more than an index lookup (queue depths, registry statistics,
// the sequencer's backlog), so a scrape reads them at most once per
// interval however often it comes, and several readers (Prometheus and
// OTLP) share one read.
type dbStats struct {
	mu          sync.Mutex
	interval    time.Duration
	engine      *engine.Engine
	subscribers *events.Registry
	read        time.Time
	queue       []engine.QueueDepth
	registry    engine.RegistryStats
	unnumbered  int64
	// seen are the queue series reported before, so one that empties
	// reports 0 rather than vanishing.
	seen map[queueKey]bool
}

type queueKey struct {
	engine.HandlerRef
	state string
}

// configure sets what New knows: the interval and the in-process
// subscribers.
func (d *dbStats) configure(interval time.Duration, subscribers *events.Registry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.interval, d.subscribers = interval, subscribers
}

// setEngine sets the engine the queue and registry gauges ask.
func (d *dbStats) setEngine(e *engine.Engine) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.engine = e
}

// refresh reads the database once the interval has passed since the last
// read; a failed read keeps the previous values. It runs with d.mu held.
func (d *dbStats) refresh(ctx context.Context, eventLog *events.Log) {
	interval := d.interval
	if interval <= 0 {
		interval = DefaultStatsInterval
	}
	if !d.read.IsZero() && time.Since(d.read) < interval {
		return
	}
	d.read = time.Now()
	if n, err := eventLog.Unnumbered(ctx); err == nil {
		d.unnumbered = n
	}
	if d.engine == nil {
		return
	}
	if q, err := d.engine.QueueDepths(ctx); err == nil {
		d.queue = q
	}
	if r, err := d.engine.RegistryStats(ctx, activeWorkerWindow); err == nil {
		d.registry = r
	}
}

// gauges registers the observable instruments: the event log, the
// subscriptions, the queue, the registry and the database pools.
func (m *metrics) gauges(meter metric.Meter, eventLog *events.Log, db *storage.DB) error {
	var errs []error
	gauge := func(name, help string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithDescription(help))
		errs = append(errs, err)
		return g
	}
	counter := func(name, help string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithDescription(help))
		errs = append(errs, err)
		return c
	}
	head := gauge("tasker_event_log_head_sequence", "The highest sequence number of the event log.")
	seqLag := gauge("tasker_event_sequencer_lag", "Committed events not numbered yet (PostgreSQL's sequencer backlog; 0 on SQLite).")
	subs := gauge("tasker_subscriptions_active", "Event subscriptions running in this process (streams and in-process subscribers).")
	subLag := gauge("tasker_subscription_max_lag", "Events between the log's head and the furthest-behind subscription of this process.")
	queue := gauge("tasker_queue_depth", "Steps enqueued, waiting for a retry or in progress, by handler and state.")
	templates := gauge("tasker_registry_templates", "Task templates (distinct names) per namespace.")
	versions := gauge("tasker_registry_template_versions", "Task template versions per namespace.")
	workers := gauge("tasker_handler_workers", "Workers that claimed or heartbeated for the handler within the last minute.")
	unserved := gauge("tasker_handlers_without_workers", "Handlers used by templates that no worker served within the last minute.")
	subscribers := gauge("tasker_event_subscribers_registered", "In-process event subscribers registered.")
	exporters := gauge("tasker_event_exporters_registered", "Event export formats registered.")
	conns := gauge("tasker_db_connections", "Database connections by pool and state (in_use, idle).")
	connsMax := gauge("tasker_db_connections_max", "The size limit of each database pool (0: none).")
	waits := counter("tasker_db_connection_waits", "Times a caller waited for a free database connection.")
	commits := counter("tasker_db_group_commits", "Transactions the SQLite group committer committed (0 on PostgreSQL).")
	committed := counter("tasker_db_group_commit_transactions", "Callers' transactions those commits carried: over tasker_db_group_commits_total, the mean group size.")
	if err := errors.Join(errs...); err != nil {
		return err
	}
	set := func(kv ...string) metric.ObserveOption {
		attrs := make([]attribute.KeyValue, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			attrs = append(attrs, attribute.String(kv[i], kv[i+1]))
		}
		return metric.WithAttributeSet(attribute.NewSet(attrs...))
	}
	d := m.stats
	_, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		// One read of an indexed maximum per collection; a database that
		// does not answer leaves the gauge out of this one.
		h, headErr := eventLog.Head(ctx)
		if headErr == nil {
			o.ObserveInt64(head, h)
		}
		n, lowest := eventLog.Following()
		o.ObserveInt64(subs, int64(n))
		if headErr == nil {
			lag := int64(0)
			if lowest >= 0 && h > lowest {
				lag = h - lowest
			}
			o.ObserveInt64(subLag, lag)
		}
		for name, st := range db.Pools() {
			o.ObserveInt64(conns, int64(st.InUse), set("pool", name, "state", "in_use"))
			o.ObserveInt64(conns, int64(st.Idle), set("pool", name, "state", "idle"))
			o.ObserveInt64(connsMax, int64(st.MaxOpenConnections), set("pool", name))
			o.ObserveInt64(waits, st.WaitCount, set("pool", name))
		}
		c, f := db.GroupCommits()
		o.ObserveInt64(commits, c)
		o.ObserveInt64(committed, f)

		d.mu.Lock()
		defer d.mu.Unlock()
		d.refresh(ctx, eventLog)
		o.ObserveInt64(seqLag, d.unnumbered)
		if d.seen == nil {
			d.seen = map[queueKey]bool{}
		}
		now := map[queueKey]int64{}
		for _, q := range d.queue {
			k := queueKey{q.HandlerRef, q.State}
			now[k] += q.Count
			d.seen[k] = true
		}
		for k := range d.seen {
			o.ObserveInt64(queue, now[k], set("namespace", k.Namespace, "handler", k.Handler, "state", k.state))
		}
		for _, ns := range d.registry.Namespaces {
			o.ObserveInt64(templates, ns.Templates, set("namespace", ns.Namespace))
			o.ObserveInt64(versions, ns.Versions, set("namespace", ns.Namespace))
		}
		gaps := map[string]int64{}
		for _, ns := range d.registry.Namespaces {
			gaps[ns.Namespace] = 0
		}
		for _, hi := range d.registry.Handlers {
			o.ObserveInt64(workers, int64(len(hi.Workers)), set("namespace", hi.Namespace, "handler", hi.Handler))
			if hi.UsedByTemplates && len(hi.Workers) == 0 {
				gaps[hi.Namespace]++
			}
		}
		for ns, n := range gaps {
			o.ObserveInt64(unserved, n, set("namespace", ns))
		}
		if d.subscribers != nil {
			o.ObserveInt64(subscribers, int64(d.subscribers.Subscribers()))
			o.ObserveInt64(exporters, int64(len(d.subscribers.Formats())))
		} else {
			o.ObserveInt64(subscribers, 0)
			o.ObserveInt64(exporters, 0)
		}
		return nil
	}, head, seqLag, subs, subLag, queue, templates, versions, workers, unserved, subscribers, exporters,
		conns, connsMax, waits, commits, committed)
	return err
}
