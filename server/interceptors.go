package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/google/uuid"
	grpcmw "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/taskerhq/tasker/correlation"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/reqcheck"
)

// withCorrelation reads the x-correlation-id header (or makes an id), puts
// it in the context, on the span and in the response header.
func withCorrelation(ctx context.Context) context.Context {
	var id string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(correlation.Header); len(v) > 0 && correlation.Valid(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		id = correlation.New()
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("tasker.correlation_id", id))
	// SetHeader fails only when headers were already sent, which cannot
	// happen before the handler runs.
	_ = grpc.SetHeader(ctx, metadata.Pairs(correlation.Header, id))
	return correlation.WithID(ctx, id)
}

func correlationUnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(withSubject(withCorrelation(ctx), info.FullMethod, req), req)
}

// withSubject puts the task and step a request names in the context, so
// the call's log lines (its summary, a panic, the engine's) carry task_id
// and step_id. Only well-formed ids are taken: a malformed one is the
// request's error, reported by the handler, not a log field.
func withSubject(ctx context.Context, method string, req any) context.Context {
	if r, ok := req.(interface{ GetTaskId() string }); ok && isID(r.GetTaskId()) {
		ctx = correlation.WithTask(ctx, r.GetTaskId())
	}
	if r, ok := req.(interface{ GetStepId() string }); ok && isID(r.GetStepId()) {
		ctx = correlation.WithStep(ctx, r.GetStepId())
	}
	// GetTask, CancelTask, GetStep, RetryStep and the like name theirs "id".
	if r, ok := req.(interface{ GetId() string }); ok && isID(r.GetId()) {
		switch {
		case strings.HasPrefix(method, "/"+taskerv1.TaskService_ServiceDesc.ServiceName+"/"):
			ctx = correlation.WithTask(ctx, r.GetId())
		case strings.HasPrefix(method, "/"+taskerv1.StepService_ServiceDesc.ServiceName+"/"):
			ctx = correlation.WithStep(ctx, r.GetId())
		}
	}
	return ctx
}

// isID reports whether s is a UUID, as task and step ids are.
func isID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

func correlationStreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	wrapped := grpcmw.WrapServerStream(ss)
	wrapped.WrappedContext = withCorrelation(ss.Context())
	return handler(srv, wrapped)
}

// checkUnaryInterceptor refuses a request whose values protobuf decodes but
// the contract does not allow (see reqcheck) before any handler runs, so a
// new RPC is covered without a line of its own.
func checkUnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		if err := reqcheck.Message(m); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

func checkStreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, validatedStream{ss})
}

// validatedStream checks every message a stream receives.
type validatedStream struct{ grpc.ServerStream }

func (s validatedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		return reqcheck.Message(pm)
	}
	return nil
}

// slogLogger adapts slog to the middleware's logging interface.
func slogLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// loggingOptions log one line per finished call; its correlation_id,
// trace_id and span_id come from the logger's correlation.Handler, as on
// every other line written with the call's context.
//
// Codes that say the caller was wrong (a bad argument, an unknown id, a
// refused transition, a missing token) log at INFO: nothing is wrong with
// the server. Unavailable, which a client retries, logs at WARN; Internal
// and the other server faults at ERROR, with the correlation id the
// caller was given to quote.
func loggingOptions() []logging.Option {
	return []logging.Option{logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(codeLevel)}
}

// codeLevel is the level of a finished call's line by its code.
func codeLevel(c codes.Code) logging.Level {
	switch c {
	case codes.Unavailable:
		return logging.LevelWarn
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return logging.LevelError
	default:
		return logging.LevelInfo
	}
}

// recoveryOption turns a panic into a plain error, which the error
// interceptor then logs and masks as Internal.
func recoveryOption(log *slog.Logger) recovery.Option {
	return recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		return fmt.Errorf("panic: %v", p)
	})
}

// interceptors returns the chains, outermost first: correlation (so every
// later step sees the id), logging (so it records the final code), error
// mapping, the decode check (so nothing reads a message that did not
// decode), authorization when authz is set (inside error mapping, so its
// denials and database errors become statuses like any other; before the
// request check, so an unauthenticated caller learns nothing about its
// request), the request check, then recovery closest to the handler.
func interceptors(log *slog.Logger, errs *errorMapper, codec *requestCodec, authz *authorizer) (grpc.ServerOption, grpc.ServerOption) {
	mwLog := slogLogger(log)
	unary := []grpc.UnaryServerInterceptor{
		correlationUnaryInterceptor,
		logging.UnaryServerInterceptor(mwLog, loggingOptions()...),
		errs.unaryInterceptor,
		codec.unaryInterceptor,
	}
	stream := []grpc.StreamServerInterceptor{
		correlationStreamInterceptor,
		logging.StreamServerInterceptor(mwLog, loggingOptions()...),
		errs.streamInterceptor,
		codec.streamInterceptor,
	}
	if authz != nil {
		unary = append(unary, authz.unaryInterceptor)
		stream = append(stream, authz.streamInterceptor)
	}
	unary = append(unary, checkUnaryInterceptor, debugUnaryInterceptor(log), recovery.UnaryServerInterceptor(recoveryOption(log)))
	stream = append(stream, checkStreamInterceptor, recovery.StreamServerInterceptor(recoveryOption(log)))
	return grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)
}
