package storage

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"time"

	"entgo.io/ent/dialect"
)

// notifyTimeout bounds one NOTIFY: a notification is a wake-up whose loss
// the listeners' fallbacks cover, never worth holding a caller for long.
const notifyTimeout = 5 * time.Second

// Notifier sends PostgreSQL NOTIFYs on one channel after commits, coalescing
// those that arrive while one is being sent: under load many commits cost a
// few notifications. A NOTIFY inside a writing transaction would take the
// cluster-wide notification lock at commit and hold it through the WAL
// flush, serialising every such commit; sent after the commit it costs one
// short statement outside any transaction.
//
// A notification sent after commit can be lost when the process dies
// between the two, so every listener must also look on its own now and then
// (the sequencer's fallback, the claimers' poll deadline). On SQLite, where
// there is one process, Notify does nothing.
type Notifier struct {
	db      *DB
	channel string
	log     *slog.Logger
	// payload names this Notifier, so a listener of the same process can
	// tell its own notifications (FromSelf).
	payload string

	mu      sync.Mutex
	sending bool
	again   bool
}

// NewNotifier returns a Notifier for channel.
func (db *DB) NewNotifier(channel string, log *slog.Logger) *Notifier {
	return &Notifier{db: db, channel: channel, log: log, payload: rand.Text()}
}

// FromSelf reports whether a notification's payload is this Notifier's:
// a listener that already learned of the change in memory can skip it.
func (n *Notifier) FromSelf(payload string) bool { return payload == n.payload }

// Notify has a NOTIFY sent on the channel and returns at once: a goroutine
// sends it, and while it is sending, further calls only ask it for one more,
// which covers their commits. It never fails: a failure is logged, and the
// listeners' fallbacks make up for it.
func (n *Notifier) Notify() {
	if n.db.Dialect != dialect.Postgres {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sending {
		n.again = true
		return
	}
	n.sending = true
	go n.send()
}

// send sends NOTIFYs until no call asked for another meanwhile.
func (n *Notifier) send() {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
		if _, err := n.db.Writer.ExecContext(ctx, "SELECT pg_notify($1, $2)", n.channel, n.payload); err != nil {
			n.log.WarnContext(ctx, "notification not sent; listeners will find the change on their next look",
				slog.String("channel", n.channel), slog.Any("error", err))
		}
		cancel()
		n.mu.Lock()
		if !n.again {
			n.sending = false
			n.mu.Unlock()
			return
		}
		n.again = false
		n.mu.Unlock()
	}
}
