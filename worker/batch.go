package worker

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// Bounds of one batched report: the server takes at most 100 entries, and
// gRPC's default message limit is 4 MiB. An entry larger than the byte
// bound goes alone.
const (
	maxReportBatch      = 100
	maxReportBatchBytes = 2 << 20
)

// batcher sends reports of one kind (completions, failures) in batches:
// one call is in flight at a time, and every report made meanwhile goes out
// in the next call, up to maxReportBatch entries and maxReportBatchBytes.
// A step alone is sent at once; under load, steps share calls, and the
// server applies a batch in one transaction. Each report gets its entry's
// own answer, as an error of the single-entry RPC's code and reason.
type batcher[E proto.Message, R any] struct {
	send func(ctx context.Context, entries []E) ([]R, error)
	// tracer and name make the span of each batched call: a child of the
	// first entry's handler span, linked to every entry's, so each
	// handler's trace shows the call that reported it.
	tracer trace.Tracer
	name   string

	mu      sync.Mutex
	pending []*batchItem[E, R]
	sending bool
}

type batchItem[E, R any] struct {
	ctx   context.Context
	entry E
	size  int
	done  chan struct{}
	res   R
	err   error
}

func newBatcher[E proto.Message, R any](tracer trace.Tracer, name string, send func(context.Context, []E) ([]R, error)) *batcher[E, R] {
	return &batcher[E, R]{send: send, tracer: tracer, name: name}
}

// do queues entry for the next batch and waits for its answer or for ctx.
// An entry whose caller stopped waiting may still be sent: reports are
// idempotent, and the caller repeats it anyway.
func (b *batcher[E, R]) do(ctx context.Context, entry E) (R, error) {
	it := &batchItem[E, R]{ctx: ctx, entry: entry, size: proto.Size(entry), done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, it)
	if !b.sending {
		b.sending = true
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-it.done:
		return it.res, it.err
	case <-ctx.Done():
		var zero R
		return zero, status.FromContextError(ctx.Err()).Err()
	}
}

// run sends what is pending, batch after batch, and ends when nothing is.
func (b *batcher[E, R]) run() {
	for {
		b.mu.Lock()
		n, size := 0, 0
		for n < len(b.pending) && n < maxReportBatch && (n == 0 || size+b.pending[n].size <= maxReportBatchBytes) {
			size += b.pending[n].size
			n++
		}
		if n == 0 {
			b.sending = false
			b.mu.Unlock()
			return
		}
		batch := b.pending[:n:n]
		b.pending = append([]*batchItem[E, R](nil), b.pending[n:]...)
		b.mu.Unlock()
		b.sendBatch(batch)
	}
}

func (b *batcher[E, R]) sendBatch(batch []*batchItem[E, R]) {
	live := batch[:0:0]
	for _, it := range batch {
		if err := it.ctx.Err(); err != nil {
			it.err = status.FromContextError(err).Err()
			close(it.done)
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return
	}
	entries := make([]E, len(live))
	for i, it := range live {
		entries[i] = it.entry
	}
	links := make([]trace.Link, 0, len(live))
	for _, it := range live {
		if sc := trace.SpanContextFromContext(it.ctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	ctx, span := b.tracer.Start(batchContext(live[0].ctx), b.name, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithLinks(links...), trace.WithAttributes(attribute.Int("tasker.batch_size", len(live))))
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	rs, err := b.send(ctx, entries)
	cancel()
	if err != nil {
		span.SetStatus(otelcodes.Error, status.Convert(err).Message())
	}
	span.End()
	if err == nil && len(rs) != len(live) {
		err = status.Errorf(codes.Internal, "the server answered %d results for %d entries", len(rs), len(live))
	}
	for i, it := range live {
		if err != nil {
			it.err = err
		} else {
			it.res = rs[i]
		}
		close(it.done)
	}
}

// batchContext is the context of a batched call: the first report's
// values and metadata, without its cancellation (the call has its own
// timeout) and without its correlation id, which names one step's task and
// not the others'.
func batchContext(ctx context.Context) context.Context {
	ctx = context.WithoutCancel(ctx)
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(correlationHeader)) > 0 {
		md = md.Copy()
		md.Delete(correlationHeader)
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	return ctx
}

// entryError turns a batch entry's result into the error its single-entry
// RPC would have returned: nil for OK, else a status of its code and
// message with the ErrorInfo reason and metadata.
func entryError(r *taskerv1.EntryResult) error {
	if codes.Code(r.GetCode()) == codes.OK {
		return nil
	}
	st := status.New(codes.Code(r.GetCode()), r.GetMessage())
	if r.GetReason() != "" {
		if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{
			Reason: r.GetReason(), Domain: "tasker.v1", Metadata: r.GetMetadata(),
		}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}
