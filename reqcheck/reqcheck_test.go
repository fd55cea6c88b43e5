package reqcheck_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/reqcheck"
)

func fields(t *testing.T, err error) []string {
	t.Helper()
	fe, ok := fault.As(err)
	require.True(t, ok, "not a fault: %v", err)
	require.Equal(t, fault.InvalidArgument, fe.Code)
	var out []string
	for _, v := range fe.Violations {
		out = append(out, v.Field)
	}
	return out
}

func TestMessage(t *testing.T) {
	t.Parallel()
	nested := &structpb.Struct{Fields: map[string]*structpb.Value{
		"ok": structpb.NewNumberValue(1.5),
		"order": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"items": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
				structpb.NewNumberValue(1), structpb.NewNumberValue(math.Inf(-1)),
			}}),
		}}),
	}}
	long := strings.Repeat("k", 1000)
	for name, tc := range map[string]struct {
		m    proto.Message
		want []string
	}{
		"valid": {m: &taskerv1.ListTasksRequest{CreateTimeTo: timestamppb.Now()}},
		"empty": {m: &taskerv1.ListTasksRequest{}},
		"year 10000": {
			m:    &taskerv1.ListTasksRequest{CreateTimeTo: &timestamppb.Timestamp{Seconds: 253402300800}},
			want: []string{"create_time_to"},
		},
		"year 0": {
			m:    &taskerv1.ListTasksRequest{CreateTimeFrom: &timestamppb.Timestamp{Seconds: -62135596801}},
			want: []string{"create_time_from"},
		},
		"timestamp nanos": {
			m:    &taskerv1.ListTasksRequest{CreateTimeFrom: &timestamppb.Timestamp{Nanos: -1}},
			want: []string{"create_time_from"},
		},
		"enum": {
			m:    &taskerv1.ListStepsRequest{View: 99},
			want: []string{"view"},
		},
		"repeated enum": {
			m:    &taskerv1.ListTasksRequest{States: []taskerv1.TaskState{taskerv1.TaskState_TASK_STATE_PENDING, 42}},
			want: []string{"states[1]"},
		},
		"duration nanos": {
			m:    &taskerv1.FailStepRequest{RetryAfter: &durationpb.Duration{Nanos: 1e9}},
			want: []string{"retry_after"},
		},
		"duration sign": {
			m:    &taskerv1.FailStepRequest{RetryAfter: &durationpb.Duration{Seconds: 1, Nanos: -1}},
			want: []string{"retry_after"},
		},
		"nested struct": {
			m:    &taskerv1.CreateTaskRequest{Context: nested},
			want: []string{"context.order.items[1]"},
		},
		"long key is cut": {
			m: &taskerv1.CreateTaskRequest{Context: &structpb.Struct{Fields: map[string]*structpb.Value{
				long: structpb.NewNumberValue(math.NaN()),
			}}},
			want: []string{"context." + strings.Repeat("k", 32) + "…"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := reqcheck.Message(tc.m)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Equal(t, tc.want, fields(t, err))
		})
	}
}

// nest returns a JSON object nested depth levels deep ({"a": {"a": … 1}}),
// with a list as its innermost container when list is set.
func nest(depth int, list bool) *structpb.Struct {
	inner := structpb.NewNumberValue(1)
	if list {
		inner = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{inner}})
		depth--
	}
	s := &structpb.Struct{Fields: map[string]*structpb.Value{"a": inner}}
	for range depth - 1 {
		s = &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStructValue(s)}}
	}
	return s
}

func TestMessageJSONDepth(t *testing.T) {
	t.Parallel()
	for _, list := range []bool{false, true} {
		require.NoError(t, reqcheck.Message(&taskerv1.CreateTaskRequest{Context: nest(reqcheck.MaxJSONDepth, list)}))
		got := fields(t, reqcheck.Message(&taskerv1.CreateTaskRequest{Context: nest(reqcheck.MaxJSONDepth+1, list)}))
		require.Len(t, got, 1)
		want := "context" + strings.Repeat(".a", reqcheck.MaxJSONDepth)
		require.Equal(t, want, got[0], "the path names the container one level too deep")
	}
}

func TestMessageBoundsViolations(t *testing.T) {
	t.Parallel()
	l := &structpb.ListValue{}
	for range 1000 {
		l.Values = append(l.Values, structpb.NewNumberValue(math.NaN()))
	}
	err := reqcheck.Message(&taskerv1.CreateTaskRequest{Context: &structpb.Struct{Fields: map[string]*structpb.Value{"l": structpb.NewListValue(l)}}})
	require.Len(t, fields(t, err), reqcheck.MaxViolations)
}

// FuzzMessage decodes arbitrary bytes as requests with timestamps,
// durations, enums and Structs: Message must not panic, and whatever it
// accepts must be representable as JSON (protojson refuses out-of-range
// timestamps and durations and non-finite Struct numbers).
func FuzzMessage(f *testing.F) {
	seeds := []proto.Message{
		&taskerv1.ListTasksRequest{CreateTimeTo: &timestamppb.Timestamp{Seconds: 253402300800}, States: []taskerv1.TaskState{7}},
		&taskerv1.FailStepRequest{RetryAfter: &durationpb.Duration{Nanos: 1e9}},
		&taskerv1.CreateTaskRequest{Context: &structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(math.NaN())}}},
		&taskerv1.ListStepsRequest{View: 99},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []proto.Message{
			&taskerv1.ListTasksRequest{}, &taskerv1.FailStepRequest{},
			&taskerv1.CreateTaskRequest{}, &taskerv1.ListStepsRequest{},
		} {
			if proto.Unmarshal(b, m) != nil {
				continue
			}
			err := reqcheck.Message(m)
			if err != nil {
				require.LessOrEqual(t, len(fields(t, err)), reqcheck.MaxViolations)
				continue
			}
			_, jerr := protojson.Marshal(m)
			if jerr != nil && !strings.Contains(jerr.Error(), "UTF-8") {
				t.Fatalf("accepted %v, which protojson refuses: %v", m, jerr)
			}
		}
	})
}
