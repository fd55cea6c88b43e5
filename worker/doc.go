// Package worker is the Go SDK for writing Tasker workers: processes that
// claim steps from a Tasker server over gRPC, run a handler for each, and
// report the result or the failure. A Worker serves the (namespace,
// handler) pairs registered with it. Run long-polls ClaimSteps only while
// it has free slots, runs each step in its own goroutine, renews every
// lease it holds in batched heartbeats (cancelling a handler's context when
// its lease is lost, timed out or cancelled), retries transient report
// failures within the lease, and on shutdown lets running handlers finish
// for a bounded time before giving the rest back unrun. Completions and
// failures go out in batches: one BatchCompleteSteps (BatchFailSteps) call
// in flight at a time, carrying whatever finished while the previous one
// ran (at most 100 entries, 2 MiB), each entry answered on its own. Every
// call it makes for one step carries the task's correlation id in
// x-correlation-id, and so does the context handed to the handler; a
// batched report, which may name several tasks, carries none.
//
// Handlers are plain functions. A returned error is retried with the
// step's backoff; NonRetryable, RetryAfter and WithErrorType refine it:
//
//	conn, err := grpc.NewClient("127.0.0.1:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
//	if err != nil {
//		return err
//	}
//	defer conn.Close()
//
//	w := worker.New(conn, "billing-1", worker.Options{Concurrency: 20})
//	w.MustRegister("billing", "charge_card", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
//		order, err := s.Parent(ctx, "create_order")
//		if err != nil {
//			return nil, err
//		}
//		receipt, err := charge(ctx, s.Context["customer_id"], order["total"])
//		if errors.Is(err, errCardDeclined) {
//			return nil, worker.NonRetryable(worker.WithErrorType(err, "card_declined"))
//		}
//		if err != nil {
//			return nil, err
//		}
//		return map[string]any{"receipt_id": receipt.ID}, nil
//	})
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	return w.Run(ctx) // returns after a graceful shutdown
//
// On a server that requires tokens, dial with WithToken (and TLS off
// loopback, e.g. credentials.NewTLS from TLSConfig):
//
//	tlsCfg, err := worker.TLSConfig("ca.pem", "", "")
//	if err != nil {
//		return err
//	}
//	conn, err := grpc.NewClient("tasker.internal:50051",
//		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
//		worker.WithToken(os.Getenv("TASKER_TOKEN")))
//
// A worker's token needs the scope steps:work on the namespaces it serves,
// and steps:read as well if its handlers call Step.Parent for results left
// out of the claim. Claims refused for the token are retried with backoff
// and logged, like other claim failures, so a worker outlives a token being
// replaced.
//
// Example (example_test.go) is the same program, compiled and run by go
// test against a real server.
package worker
