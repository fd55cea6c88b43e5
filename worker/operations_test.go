package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// TestRetryAfterErrorCompletesTask: a task that failed for good runs to
// completion after an operator's RetryTask, once the cause is fixed.
func TestRetryAfterErrorCompletesTask(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("ops", "retry", node("a", "flaky"), node("b", "ok", "a")))
		var fixed atomic.Bool
		w := b.newWorker("w", worker.Options{})
		w.MustRegister("ops", "flaky", func(context.Context, *worker.Step) (map[string]any, error) {
			if !fixed.Load() {
				return nil, worker.NonRetryable(errors.New("upstream down"))
			}
			return map[string]any{"fixed": true}, nil
		})
		w.MustRegister("ops", "ok", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			return s.Parent(context.Background(), "a")
		})
		start(t, w)

		task := b.wait(t, b.create(t, "ops", "retry", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, task.GetState())
		require.Equal(t, taskerv1.ExecutionStatus_EXECUTION_STATUS_BLOCKED_BY_FAILURES, task.GetExecutionStatus())

		fixed.Store(true)
		retried, err := b.tasks.RetryTask(testContext(t), &taskerv1.RetryTaskRequest{Id: task.GetId(), Reason: "upstream fixed"})
		require.NoError(t, err)
		require.Equal(t, taskerv1.TaskState_TASK_STATE_IN_PROGRESS, retried.GetTask().GetState())
		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, done.GetState())
		a := b.step(t, done, "a")
		require.Equal(t, int32(2), a.GetAttempts())
		require.Equal(t, int32(4), a.GetMaxAttempts(), "max_attempts (3) more attempts after the one made")
		require.True(t, b.step(t, done, "b").GetResult().GetFields()["fixed"].GetBoolValue())
	})
}

// TestResolveUnblocksBlockedTask: resolving the failed step by hand lets
// its children run with the manual result.
func TestResolveUnblocksBlockedTask(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("ops", "resolve", node("a", "broken"), node("b", "echo", "a")))
		w := b.newWorker("w", worker.Options{})
		w.MustRegister("ops", "broken", func(context.Context, *worker.Step) (map[string]any, error) {
			return nil, worker.NonRetryable(errors.New("bad data"))
		})
		w.MustRegister("ops", "echo", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
			return s.Parent(ctx, "a")
		})
		start(t, w)

		task := b.wait(t, b.create(t, "ops", "resolve", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, task.GetState())
		result, err := structpb.NewStruct(map[string]any{"approved_by": "ops"})
		require.NoError(t, err)
		_, err = b.steps.ResolveStep(testContext(t), &taskerv1.ResolveStepRequest{Id: b.step(t, task, "a").GetId(), Result: result})
		require.NoError(t, err)
		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, done.GetState())
		require.Equal(t, "ops", b.step(t, done, "b").GetResult().GetFields()["approved_by"].GetStringValue())
	})
}

// TestRestartMidRunLosesNothing stops the server while workers run tasks,
// starts a new one on the same database and address, and checks every task
// completes with each step completed exactly once.
func TestRestartMidRunLosesNothing(t *testing.T) {
	t.Parallel()
	for _, dialect := range storagetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			url := filepath.Join(t.TempDir(), "tasker.db")
			if dialect == "postgres" {
				url = storagetest.PostgresURL(t)
			}
			open := func() *storage.DB {
				db, err := storage.Open(context.Background(), url, storage.Options{})
				require.NoError(t, err)
				require.NoError(t, db.Migrate(context.Background()))
				return db
			}
			db1 := open()
			first := servertest.Start(t, db1, servertest.Options{Config: server.Config{ShutdownTimeout: time.Second}})
			// A connection of its own that outlives the first server.
			// WaitForReady: calls made while the server restarts wait for it
			// instead of failing fast.
			conn, err := grpc.NewClient(first.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
			require.NoError(t, err)
			defer conn.Close()
			b := &bundle{conn: conn, registry: taskerv1.NewRegistryServiceClient(conn), tasks: taskerv1.NewTaskServiceClient(conn),
				steps: taskerv1.NewStepServiceClient(conn), log: slog.New(slog.DiscardHandler)}
			b.register(t, tmpl("ops", "diamond", node("a", "work"), node("b", "work", "a"), node("c", "work", "a"), node("d", "work", "b", "c")))

			var ran atomic.Int64
			w := b.newWorker("w", worker.Options{Concurrency: 4, ClaimWait: 500 * time.Millisecond})
			w.MustRegister("ops", "work", func(context.Context, *worker.Step) (map[string]any, error) {
				ran.Add(1)
				time.Sleep(2 * time.Millisecond)
				return map[string]any{"ok": true}, nil
			})
			start(t, w)
			const n = 30
			ids := make([]string, 0, n)
			for range n {
				ids = append(ids, b.create(t, "ops", "diamond", "", nil).GetId())
			}
			require.Eventually(t, func() bool { return ran.Load() >= n }, 20*time.Second, 5*time.Millisecond)
			require.NoError(t, first.Stop())
			require.NoError(t, db1.Close())

			db2 := open()
			defer db2.Close()
			// Same address: the worker reconnects by itself.
			second := servertest.Start(t, db2, servertest.Options{Addr: first.Addr})
			defer func() { require.NoError(t, second.Stop()) }()
			for _, id := range ids {
				require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, b.wait(t, id).GetState())
			}
			var rows []struct {
				StepID string `json:"step_id"`
				Count  int    `json:"count"`
			}
			ctx := testContext(t)
			require.NoError(t, db2.Reader.StepTransition.Query().Where(steptransition.ToState(string(step.StateComplete))).
				GroupBy(steptransition.FieldStepID).Aggregate(ent.Count()).Scan(ctx, &rows))
			require.Len(t, rows, 4*n)
			for _, r := range rows {
				require.Equal(t, 1, r.Count, "step %s completed more than once", r.StepID)
			}
		})
	}
}
