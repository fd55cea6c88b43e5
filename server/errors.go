package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
)

// errorDomain is the ErrorInfo domain of every error Tasker returns.
const errorDomain = "tasker.v1"

var grpcCodes = map[fault.Code]codes.Code{
	fault.InvalidArgument:    codes.InvalidArgument,
	fault.NotFound:           codes.NotFound,
	fault.AlreadyExists:      codes.AlreadyExists,
	fault.FailedPrecondition: codes.FailedPrecondition,
	fault.Aborted:            codes.Aborted,
	fault.OutOfRange:         codes.OutOfRange,
	fault.Unauthenticated:    codes.Unauthenticated,
	fault.PermissionDenied:   codes.PermissionDenied,
	fault.Unavailable:        codes.Unavailable,
	fault.ResourceExhausted:  codes.ResourceExhausted,
}

// faultStatus turns a domain error into a status with typed details:
// BadRequest for bad fields, ErrorInfo for a reason, ResourceInfo for the
// resource at fault, RetryInfo for how long to wait before trying again.
func faultStatus(fe *fault.Error) *status.Status {
	code, ok := grpcCodes[fe.Code]
	if !ok {
		code = codes.Unknown
	}
	st := status.New(code, fe.Message)
	var details []protoadapt.MessageV1
	if len(fe.Violations) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range fe.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: v.Field, Description: v.Description,
			})
		}
		details = append(details, br)
	}
	if fe.Reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: fe.Reason, Domain: errorDomain, Metadata: fe.Metadata})
	}
	if fe.ResourceType != "" {
		details = append(details, &errdetails.ResourceInfo{ResourceType: fe.ResourceType, ResourceName: fe.ResourceName})
	}
	if fe.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(fe.RetryAfter)})
	}
	if len(details) == 0 {
		return st
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return withDetails
}

// errorMapper is the one place where errors become gRPC statuses.
type errorMapper struct {
	log *slog.Logger
	// interpret is storage's interpretation of driver errors, applied to
	// errors that reach the server without it (reads outside a
	// transaction, for instance), so a database that went away answers
	// Unavailable on every path.
	interpret func(error) error
	// unavailable is told of every error that says the database is out of
	// reach, so readiness is probed at once rather than at the next tick.
	unavailable func()
}

// toStatus maps err. Domain errors keep their code and details; context
// errors keep their meaning; anything else is internal: logged in full with
// the correlation id and masked. An unavailable database is logged too, at
// warning level, as the client sees only that it should try again.
func (m *errorMapper) toStatus(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := fault.As(err); !ok {
		if _, ok := status.FromError(err); ok {
			return err
		}
		err = m.interpret(err)
	}
	if errors.Is(err, storage.ErrUnavailable) {
		m.unavailable()
		m.log.WarnContext(ctx, "database unavailable", slog.String("grpc.method", method),
			slog.String("correlation_id", correlation.FromContext(ctx)), slog.Any("error", err))
	}
	if fe, ok := fault.As(err); ok {
		return faultStatus(fe).Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed")
	}
	id := correlation.FromContext(ctx)
	m.log.ErrorContext(ctx, "internal error", slog.String("grpc.method", method), slog.String("correlation_id", id), slog.Any("error", err))
	return status.Errorf(codes.Internal, "internal error (correlation id %s)", id)
}

// entryResult renders an error as a batch entry result, with the same code,
// reason and metadata the single-entry RPC would return.
func (m *errorMapper) entryResult(ctx context.Context, method string, err error) *taskerv1.EntryResult {
	if err == nil {
		return &taskerv1.EntryResult{}
	}
	st, _ := status.FromError(m.toStatus(ctx, method, err))
	res := &taskerv1.EntryResult{Code: int32(st.Code()), Message: st.Message()}
	if fe, ok := fault.As(err); ok {
		res.Reason = fe.Reason
		res.Metadata = fe.Metadata
	}
	return res
}

func (m *errorMapper) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, m.toStatus(ctx, info.FullMethod, err)
}

func (m *errorMapper) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return m.toStatus(ss.Context(), info.FullMethod, handler(srv, ss))
}
