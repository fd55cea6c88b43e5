package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"entgo.io/ent/dialect"
	"github.com/jackc/pgx/v5"

	"github.com/taskerhq/tasker/backoff"
)

// ListenHandler receives what a Listener hears on one channel. Both methods
// are called from the listener's goroutine and must not block: hand the work
// to a goroutine of your own (a buffered channel of one, or closing a
// broadcast channel).
type ListenHandler interface {
	// Notified is called with the payload of every notification.
	Notified(payload string)
	// CatchUp is called once LISTEN is in effect after every connection
	// and reconnection, and every ListenerOptions.Poll while the listener
	// is disconnected: notifications may have been missed, so look for
	// the change yourself.
	CatchUp()
}

// ListenFuncs adapts two functions to a ListenHandler; a nil one is not
// called.
type ListenFuncs struct {
	OnNotify  func(payload string)
	OnCatchUp func()
}

// Notified calls OnNotify.
func (f ListenFuncs) Notified(payload string) {
	if f.OnNotify != nil {
		f.OnNotify(payload)
	}
}

// CatchUp calls OnCatchUp.
func (f ListenFuncs) CatchUp() {
	if f.OnCatchUp != nil {
		f.OnCatchUp()
	}
}

// ListenerOptions are the optional settings of a Listener; the zero value
// is the default.
type ListenerOptions struct {
	// Ping is how long the connection may stay silent before the listener
	// pings the server, and how long it waits for the answer: a half-open
	// connection (the server or the network gone without a word) is
	// noticed within twice this. Default 5s.
	Ping time.Duration
	// Poll is how often the handlers are told to catch up while the
	// listener is disconnected, so their waiters fall back to a bounded
	// poll instead of sleeping until their own timeouts. Default 1s.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// between reconnection attempts; defaults 50ms and 5s: quick at first,
	// because a dropped connection usually comes straight back, and capped,
	// so a long outage costs one attempt every few seconds.
	MinBackoff, MaxBackoff time.Duration
}

// listenerApplication names the listener's connection in
// pg_stat_activity.
const listenerApplication = "tasker-listener"

// Listener is the one PostgreSQL LISTEN connection of a process. The
// parts that wait for other processes (the event log's readers, the
// sequencer, the engine's long-polling claimers) register a handler per
// channel with Handle before Run, and Run multiplexes every channel over a
// single dedicated connection: it pings the server when the connection is
// quiet, reconnects with jittered exponential backoff, and tells every
// handler to catch up after each (re)connection and periodically while it
// is disconnected. On SQLite, where one process owns the database and
// wakes its waiters in memory, Run does nothing.
type Listener struct {
	db   *DB
	log  *slog.Logger
	opts ListenerOptions

	// handlers is filled before Run and only read afterwards.
	handlers map[string][]ListenHandler
	running  atomic.Bool
	// connected is set while LISTEN is in effect on a live connection.
	connected atomic.Bool
}

// NewListener returns the listener of db; register handlers with Handle,
// then Run it.
func NewListener(db *DB, log *slog.Logger, opts ListenerOptions) *Listener {
	if opts.Ping <= 0 {
		opts.Ping = 5 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	return &Listener{db: db, log: log, opts: opts, handlers: map[string][]ListenHandler{}}
}

// errListenerRunning reports a handler added after Run started.
var errListenerRunning = errors.New("storage: the listener is already running; add handlers before Run")

// Handle registers h for channel. Several handlers may share a channel.
// It fails once Run has started: the channels are LISTENed to when the
// connection opens.
func (l *Listener) Handle(channel string, h ListenHandler) error {
	if l.running.Load() {
		return errListenerRunning
	}
	if channel == "" || h == nil {
		return errors.New("storage: a listen handler needs a channel and a handler")
	}
	l.handlers[channel] = append(l.handlers[channel], h)
	return nil
}

// Connected reports whether the listener is connected and listening right
// now. It is always true on SQLite, where there is nothing to listen to.
func (l *Listener) Connected() bool {
	return l.db.Dialect != dialect.Postgres || l.connected.Load()
}

// Run listens until ctx ends, then returns nil. Connection failures are
// logged and retried; they never end Run. Run once.
func (l *Listener) Run(ctx context.Context) error {
	if l.running.Swap(true) {
		return errors.New("storage: the listener is already running")
	}
	if l.db.Dialect != dialect.Postgres || len(l.handlers) == 0 {
		<-ctx.Done()
		return nil
	}
	wait := backoff.New(l.opts.MinBackoff, l.opts.MaxBackoff)
	for {
		err := l.session(ctx, wait.Reset)
		l.connected.Store(false)
		if ctx.Err() != nil {
			return nil //nolint:nilerr // the error is the shutdown itself
		}
		pause := wait.Next()
		l.log.WarnContext(ctx, "listener disconnected; reconnecting", slog.Any("error", err), slog.Duration("backoff", pause))
		l.pollFor(ctx, pause)
	}
}

// pollFor waits d, telling the handlers to catch up every Poll meanwhile:
// their waiters look for changes themselves while nobody tells them.
func (l *Listener) pollFor(ctx context.Context, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(l.opts.Poll)
	defer tick.Stop()
	l.catchUp()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
			l.catchUp()
		}
	}
}

func (l *Listener) catchUp() {
	for _, hs := range l.handlers {
		for _, h := range hs {
			h.CatchUp()
		}
	}
}

// session runs one connection: LISTEN to every channel, tell the handlers
// to catch up, then deliver notifications until the connection fails or
// ctx ends. connected is called once the LISTENs are in effect.
func (l *Listener) session(ctx context.Context, connected func()) error {
	conn, err := l.db.DedicatedConn(ctx, listenerApplication)
	if err != nil {
		return err
	}
	defer CloseDedicated(conn)
	for channel := range l.handlers {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
			return fmt.Errorf("storage: listen %s: %w", channel, err)
		}
	}
	// LISTEN first, then catch up: whatever happened before the LISTEN is
	// found by the handlers' own look, whatever after is notified.
	l.connected.Store(true)
	connected()
	l.catchUp()
	for {
		wctx, cancel := context.WithTimeout(ctx, l.opts.Ping)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			for _, h := range l.handlers[n.Channel] {
				h.Notified(n.Payload)
			}
		case errors.Is(err, context.DeadlineExceeded):
			// Quiet for Ping: make sure the connection is still there, so
			// a half-open one is not trusted for minutes.
			pctx, cancel := context.WithTimeout(ctx, l.opts.Ping)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("storage: listener ping: %w", err)
			}
		default:
			return fmt.Errorf("storage: wait for notification: %w", err)
		}
	}
}
