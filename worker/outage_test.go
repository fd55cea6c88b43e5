package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// TestReportOutlivesServerRestart: the server goes away after a handler
// has started and stays away while the worker reports the result, longer
// than the worker's retries lasted before (five attempts in about 1.5s).
// The worker keeps retrying within the lease, the report lands on the
// restarted server, and the step runs once.
func TestReportOutlivesServerRestart(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		first := servertest.Start(t, db, servertest.Options{Config: server.Config{ShutdownTimeout: time.Second}})

		// A connection of its own that outlives the first server, without
		// WaitForReady: calls fail fast while the server is away, as a
		// worker's usually do. The interceptor counts failed reports.
		var failedReports atomic.Int64
		countFailures := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err != nil && (method == taskerv1.StepService_CompleteStep_FullMethodName || method == taskerv1.StepService_BatchCompleteSteps_FullMethodName) {
				failedReports.Add(1)
			}
			return err
		}
		conn, err := grpc.NewClient(first.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithChainUnaryInterceptor(countFailures))
		require.NoError(t, err)
		defer conn.Close()
		b := connect(t, first)
		b.conn = conn

		tpl := tmpl("ops", "once", node("a", "work"))
		tpl.LeaseDuration = durationpb.New(time.Minute)
		b.register(t, tpl)

		started := make(chan struct{})
		finish := make(chan struct{})
		ran := newCalls()
		w := b.newWorker("w", worker.Options{})
		w.MustRegister("ops", "work", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
			ran.record(s)
			close(started)
			select {
			case <-finish:
				return map[string]any{"done": true}, nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		})
		r := start(t, w)
		task := b.create(t, "ops", "once", "", nil)
		<-started

		require.NoError(t, first.Stop())
		close(finish)
		// Past the old limit in attempts and in time.
		stoppedAt := time.Now()
		require.Eventually(t, func() bool {
			return failedReports.Load() > 5 && time.Since(stoppedAt) > 2*time.Second
		}, 20*time.Second, 10*time.Millisecond)

		second := servertest.Start(t, db, servertest.Options{Addr: first.Addr})
		b.tasks = taskerv1.NewTaskServiceClient(second.Conn)
		b.steps = taskerv1.NewStepServiceClient(second.Conn)
		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, done.GetState())
		a := b.step(t, done, "a")
		require.Equal(t, int32(1), a.GetAttempts())
		ran.requireOnce(t, []string{a.GetId()})
		require.NoError(t, r.stop(t))
	})
}
