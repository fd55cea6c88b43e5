package server_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// rawCodec sends requests as the bytes given, so a test can put on the wire
// what no protobuf library would encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// deepValue encodes a JSON value nested depth objects deep, deeper than
// protobuf's decoder follows when depth is in the thousands.
func deepValue(depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewNumberValue(1)}}
	for range depth {
		s = &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStructValue(s)}}
	}
	return s
}

// TestMalformedProtobufIsInvalidArgument: a request protobuf cannot decode
// (invalid UTF-8 in a string, a truncated field, nesting past the decoder's
// limit) is the caller's mistake, answered InvalidArgument on unary calls
// and streams alike, and changes nothing; the server keeps serving.
func TestMalformedProtobufIsInvalidArgument(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "raw")

		badUTF8 := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe")
		truncated := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.BytesType), 100)
		deepContext, err := proto.Marshal(&taskerv1.CreateTaskRequest{Namespace: "raw", Name: "chain", Context: deepValue(4000)})
		require.NoError(t, err)
		// SubscribeRequest.filter (1) holding an EventFilter whose first
		// string field is not UTF-8.
		badFilter := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), badUTF8)

		for name, tc := range map[string]struct {
			method string
			body   []byte
		}{
			"invalid utf-8":          {"/tasker.v1.TaskService/GetTask", badUTF8},
			"truncated":              {"/tasker.v1.TaskService/GetTask", truncated},
			"nesting past the limit": {"/tasker.v1.TaskService/CreateTask", deepContext},
		} {
			var reply []byte
			err := b.conn.Invoke(ctx, tc.method, &tc.body, &reply, grpc.ForceCodecV2(rawCodec{}))
			requireCode(t, err, codes.InvalidArgument)
			require.NotContains(t, err.Error(), "\xff", name)
		}

		stream, err := b.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/tasker.v1.EventService/Subscribe", grpc.ForceCodecV2(rawCodec{}))
		require.NoError(t, err)
		require.NoError(t, stream.SendMsg(&badFilter))
		require.NoError(t, stream.CloseSend())
		var reply []byte
		requireCode(t, stream.RecvMsg(&reply), codes.InvalidArgument)

		// Nothing was created, and the server still answers.
		list, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "raw"})
		require.NoError(t, err)
		require.Empty(t, list.GetTasks())
	})
}
