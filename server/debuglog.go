package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxSummaryString bounds a string field in a request summary.
const maxSummaryString = 64

// debugUnaryInterceptor logs, at DEBUG only (--log-level debug), a summary
// of each request before it is handled: its method, size and top-level
// fields, with strings cut short and documents, lists and messages given
// by size only, and fields named for a token redacted, so no context,
// result or token value reaches the log.
func debugUnaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if m, ok := req.(proto.Message); ok && log.Enabled(ctx, slog.LevelDebug) {
			log.DebugContext(ctx, "request", slog.String("grpc.method", info.FullMethod),
				slog.Int("request_bytes", proto.Size(m)), slog.Any("request", summarize(m)))
		}
		return handler(ctx, req)
	}
}

// summarize describes m's set top-level fields.
func summarize(m proto.Message) map[string]any {
	out := map[string]any{}
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		switch {
		case fd.IsList():
			out[name] = fmt.Sprintf("%d items", v.List().Len())
		case fd.IsMap():
			out[name] = fmt.Sprintf("%d entries", v.Map().Len())
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			out[name] = fmt.Sprintf("%d bytes", proto.Size(v.Message().Interface()))
		case fd.Kind() == protoreflect.BytesKind:
			out[name] = fmt.Sprintf("%d bytes", len(v.Bytes()))
		case fd.Kind() == protoreflect.StringKind && strings.Contains(name, "token"):
			out[name] = "(redacted)"
		case fd.Kind() == protoreflect.StringKind:
			s := v.String()
			if len(s) > maxSummaryString {
				s = s[:maxSummaryString] + "…"
			}
			out[name] = s
		case fd.Kind() == protoreflect.EnumKind:
			if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
				out[name] = string(ev.Name())
			} else {
				out[name] = int32(v.Enum())
			}
		default:
			out[name] = v.Interface()
		}
		return true
	})
	return out
}
