package server

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// TestRenderCacheEncodesOnce: the bytes every stream sends for an event
// decode to the SubscribeResponse that carries its rendering, the codec
// passes them through unchanged, and a second stream gets the same bytes
// without encoding again; a different event in the same slot replaces them.
func TestRenderCacheEncodesOnce(t *testing.T) {
	t.Parallel()
	task := uuid.New()
	ev := &events.Stored{ID: 9, Sequence: 7, Type: events.TaskCreated, CorrelationID: "c1", Namespace: "ns",
		TaskID: &task, Payload: []byte(`{"n":1}`), CreatedAt: time.Unix(1700000000, 0).UTC()}
	var c renderCache
	wire, err := c.get(ev)
	require.NoError(t, err)
	var got taskerv1.SubscribeResponse
	require.NoError(t, proto.Unmarshal(wire, &got))
	require.True(t, proto.Equal(&taskerv1.SubscribeResponse{Message: &taskerv1.SubscribeResponse_Event{Event: eventToProto(ev)}}, &got))

	again, err := c.get(ev)
	require.NoError(t, err)
	require.Same(t, &wire[0], &again[0], "shared, not encoded again")

	out, err := newRequestCodec().Marshal(wire)
	require.NoError(t, err)
	require.Equal(t, []byte(wire), out.Materialize())

	other := *ev
	other.Sequence += int64(len(c.slots))
	other.CorrelationID = "c2"
	replaced, err := c.get(&other)
	require.NoError(t, err)
	require.NoError(t, proto.Unmarshal(replaced, &got))
	require.Equal(t, "c2", got.GetEvent().GetCorrelationId())
}
