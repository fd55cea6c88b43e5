package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/worker"
)

// Example runs a worker for a two-step template, quote → total, against a
// Tasker server, creates a task, follows its events until it finishes and
// prints the last step's result.
func Example() {
	addr, stop := exampleServer()
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	w := worker.New(conn, "example-1", worker.Options{Concurrency: 4, Logger: slog.New(slog.DiscardHandler)})
	w.MustRegister("shop", "quote", func(_ context.Context, s *worker.Step) (map[string]any, error) {
		return map[string]any{"price": s.Context["quantity"].(float64) * 7}, nil
	})
	w.MustRegister("shop", "total", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
		quote, err := s.Parent(ctx, "quote")
		if err != nil {
			return nil, err
		}
		return map[string]any{"total": quote["price"].(float64) + 0.5}, nil
	})
	workerCtx, stopWorker := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- w.Run(workerCtx) }()

	registry := taskerv1.NewRegistryServiceClient(conn)
	_, err = registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: &taskerv1.TaskTemplate{
		Namespace: "shop", Name: "order", Version: "1.0.0",
		Steps: []*taskerv1.StepTemplate{
			{Name: "quote", Handler: "quote"},
			{Name: "total", Handler: "total", DependsOn: []string{"quote"}},
		},
	}})
	if err != nil {
		panic(err)
	}
	tasks := taskerv1.NewTaskServiceClient(conn)
	order, _ := structpb.NewStruct(map[string]any{"quantity": 6})
	created, err := tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "order", Context: order})
	if err != nil {
		panic(err)
	}
	id := created.GetTask().GetId()

	// The task's events from its first, ending when the task finishes.
	stream, err := taskerv1.NewEventServiceClient(conn).Subscribe(ctx, &taskerv1.SubscribeRequest{
		Filter:            &taskerv1.EventFilter{TaskId: id},
		Start:             taskerv1.StartPosition_START_POSITION_BEGINNING,
		UntilTaskFinished: true,
	})
	if err != nil {
		panic(err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			panic(err)
		}
		if ev := msg.GetEvent(); ev != nil && ev.GetType() == "task.completed" {
			fmt.Println("event:", ev.GetType())
		}
	}
	stopWorker()
	if err := <-ran; err != nil {
		panic(err)
	}

	task, err := tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
	if err != nil {
		panic(err)
	}
	fmt.Println("state:", task.GetTask().GetState())
	steps, err := taskerv1.NewStepServiceClient(conn).ListSteps(ctx, &taskerv1.ListStepsRequest{
		TaskId: id, View: taskerv1.StepView_STEP_VIEW_FULL,
	})
	if err != nil {
		panic(err)
	}
	for _, s := range steps.GetSteps() {
		if s.GetName() == "total" {
			fmt.Println("total:", s.GetResult().AsMap()["total"])
		}
	}
	// Output:
	// event: task.completed
	// state: TASK_STATE_COMPLETE
	// total: 42.5
}

// ExampleNonRetryable shows a handler that tells retryable failures from
// permanent ones: a declined card fails the step at once, with an error
// type the task's events and GetStep show; anything else is retried with
// the step's backoff, and a rate limit after the time the other side asked
// for.
func ExampleNonRetryable() {
	errDeclined := errors.New("card declined")
	errRateLimited := errors.New("rate limited")
	charge := func(context.Context, any) error { return errDeclined }

	handler := func(ctx context.Context, s *worker.Step) (map[string]any, error) {
		err := charge(ctx, s.Context["customer_id"])
		switch {
		case errors.Is(err, errDeclined):
			return nil, worker.NonRetryable(worker.WithErrorType(err, "card_declined"))
		case errors.Is(err, errRateLimited):
			return nil, worker.RetryAfter(err, 30*time.Second)
		case err != nil:
			return nil, err
		}
		return map[string]any{"charged": true}, nil
	}
	_, err := handler(context.Background(), &worker.Step{Context: map[string]any{"customer_id": "c-1"}})
	fmt.Println(err)
	// Output: card declined
}

// exampleServer serves Tasker on a loopback port from a SQLite file in a
// temporary folder, the way `tasker serve` does.
func exampleServer() (addr string, stop func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tasker-example-")
	if err != nil {
		panic(err)
	}
	db, err := storage.Open(ctx, filepath.Join(dir, "tasker.db"), storage.Options{})
	if err != nil {
		panic(err)
	}
	if err := db.Migrate(ctx); err != nil {
		panic(err)
	}
	log := slog.New(slog.DiscardHandler)
	templates, eventLog, eng := server.Components(log, db)
	srv := server.New(log, db, templates, eng, eventLog, server.Config{})
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	serveCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(serveCtx, lis, nil) }()
	return lis.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			panic(err)
		}
		_ = db.Close()
		_ = os.RemoveAll(dir)
	}
}
