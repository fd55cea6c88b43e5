package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerhq/tasker/ent"
)

// A group is bounded in size and in time, since every caller in it waits
// for the group's commit: a burst must not make its first caller wait for
// all the others. Requests a group has no time left for open the next one.
const (
	maxGroup    = 64
	groupBudget = 5 * time.Millisecond
)

// groupCommitter runs the write transactions of a SQLite database, which has
// one writer, in groups: whatever queued while the previous group held the
// writer runs as one transaction, each in a savepoint of its own, and
// commits once. The pages a group's transactions share (the same index
// pages, the event log's tail) are then written to the WAL once per group
// instead of once per transaction.
//
// Each caller still returns only after its own work has committed, and an
// error in one function rolls back to its savepoint without touching the
// others. When the group's transaction itself fails (BEGIN, a savepoint, or
// COMMIT; or SQLite rolled the whole transaction back, as an interrupted
// statement does), every function whose work is not committed runs again
// alone: Tx's contract already allows running fn more than once.
type groupCommitter struct {
	client *ent.Client
	reqs   chan *txRequest
	quit   chan struct{}
	done   sync.WaitGroup

	// For tests: callers waiting for the committer to take their request,
	// groups of several committed together, and groups whose transaction
	// failed so that each function ran alone.
	waiting, grouped, fallbacks atomic.Int64
	// commits counts the transactions committed, and committedFns the
	// callers' functions they carried: their ratio is the mean group size.
	commits, committedFns atomic.Int64
}

type txRequest struct {
	ctx context.Context
	fn  func(*ent.Tx) error
	// stats, from ctx, are the statements and group size the caller's
	// span reports; nil when it has none.
	stats *txStats
	// result receives fn's outcome once it is committed or rolled back.
	result chan txResult
}

type txResult struct {
	err   error
	panic any
}

func newGroupCommitter(client *ent.Client) *groupCommitter {
	g := &groupCommitter{client: client, reqs: make(chan *txRequest), quit: make(chan struct{})}
	g.done.Add(1)
	go g.run()
	return g
}

// errClosed answers transactions submitted after Close.
var errClosed = errors.New("storage: database closed")

// Tx runs fn in the next group and returns its outcome after the group's
// commit. A panic in fn is re-raised in the caller.
func (g *groupCommitter) Tx(ctx context.Context, fn func(*ent.Tx) error) error {
	req := &txRequest{ctx: ctx, fn: fn, stats: statsFrom(ctx), result: make(chan txResult, 1)}
	g.waiting.Add(1)
	select {
	case g.reqs <- req:
		g.waiting.Add(-1)
	case <-g.quit:
		g.waiting.Add(-1)
		return errClosed
	case <-ctx.Done():
		g.waiting.Add(-1)
		return ctx.Err()
	}
	// Once submitted, fn may be running: wait for its outcome whatever ctx
	// does, so the caller never returns while its transaction is open.
	res := <-req.result
	if res.panic != nil {
		panic(res.panic)
	}
	return res.err
}

// close stops the committer after the group in progress.
func (g *groupCommitter) close() {
	close(g.quit)
	g.done.Wait()
}

func (g *groupCommitter) run() {
	defer g.done.Done()
	var pending []*txRequest
	for {
		var first *txRequest
		select {
		case first = <-g.reqs:
		case <-g.quit:
			return
		}
		pending = append(pending, first)
	collect:
		for len(pending) < maxGroup {
			select {
			case r := <-g.reqs:
				pending = append(pending, r)
			default:
				break collect
			}
		}
		for len(pending) > 0 {
			pending = g.runGroup(pending)
		}
	}
}

// runGroup runs the requests of group in one transaction, or each alone
// when that fails, and returns those the group had no time for.
func (g *groupCommitter) runGroup(group []*txRequest) []*txRequest {
	// Callers that gave up before their turn are answered without running.
	live := make([]*txRequest, 0, len(group))
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.result <- txResult{err: err}
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		live[0].result <- g.alone(live[0])
		return nil
	}
	results, err := g.together(live)
	if err != nil {
		// Nothing of the group committed: run each alone.
		g.fallbacks.Add(1)
		for _, r := range live {
			r.result <- g.alone(r)
		}
		return nil
	}
	g.grouped.Add(1)
	g.commits.Add(1)
	g.committedFns.Add(int64(len(results)))
	for i, res := range results {
		if s := live[i].stats; s != nil {
			s.group = len(results)
		}
		live[i].result <- res
	}
	return live[len(results):]
}

// together runs requests in one transaction, each in a savepoint, until
// they are done or the group's time is up, and commits. It returns the
// outcome of each request it ran, valid only when the error is nil, which
// means the transaction committed.
func (g *groupCommitter) together(reqs []*txRequest) (_ []txResult, err error) {
	// The transaction is the group's, not any caller's: one caller's
	// cancellation must not roll back the others' work. It counts its
	// statements when some caller's span wants its own counted: each
	// gets the statements of its function, savepoints left out.
	ctx := context.Background()
	var group *txStats
	for _, r := range reqs {
		if r.stats != nil {
			group = &txStats{}
			ctx = context.WithValue(ctx, txStatsKey{}, group)
			break
		}
	}
	start := time.Now()
	tx, err := g.client.Tx(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	results := make([]txResult, 0, len(reqs))
	for _, r := range reqs {
		if len(results) > 0 && time.Since(start) > groupBudget {
			break
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT tasker_group"); err != nil {
			return nil, fmt.Errorf("storage: savepoint: %w", err)
		}
		var before int64
		if r.stats != nil {
			before = group.statements.Load()
		}
		res := runFn(r.fn, tx)
		if r.stats != nil {
			r.stats.statements.Add(group.statements.Load() - before)
		}
		if res.err != nil || res.panic != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO tasker_group"); err != nil {
				return nil, fmt.Errorf("storage: rollback to savepoint: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE tasker_group"); err != nil {
			return nil, fmt.Errorf("storage: release savepoint: %w", err)
		}
		results = append(results, res)
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return results, nil
}

// alone runs one request in a transaction of its own, which counts its
// statements into r.stats since it begins with r.ctx.
func (g *groupCommitter) alone(r *txRequest) txResult {
	if r.stats != nil {
		r.stats.group = 1
	}
	tx, err := g.client.Tx(r.ctx)
	if err != nil {
		return txResult{err: err}
	}
	res := runFn(r.fn, tx)
	if res.err != nil || res.panic != nil {
		if rerr := tx.Rollback(); rerr != nil && res.err != nil {
			res.err = fmt.Errorf("%w (rollback: %w)", res.err, rerr)
		}
		return res
	}
	if err := tx.Commit(); err != nil {
		return txResult{err: err}
	}
	g.commits.Add(1)
	g.committedFns.Add(1)
	return txResult{}
}

// runFn calls fn, turning a panic into a result for the caller to re-raise.
func runFn(fn func(*ent.Tx) error, tx *ent.Tx) (res txResult) {
	defer func() {
		if v := recover(); v != nil {
			res = txResult{panic: v}
		}
	}()
	return txResult{err: fn(tx)}
}
