package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/page"
)

// Bounds of SubscribeRequest.heartbeat_interval.
const (
	minHeartbeat     = 100 * time.Millisecond
	maxHeartbeat     = 5 * time.Minute
	defaultHeartbeat = 15 * time.Second
)

// eventService implements tasker.v1.EventService over the event log.
type eventService struct {
	taskerv1.UnimplementedEventServiceServer
	log *events.Log
	// stopping is closed when the server shuts down: streams end then.
	stopping <-chan struct{}
	// streams counts the open Subscribe streams, at most maxStreams.
	streams    atomic.Int64
	maxStreams int64
	// rendered shares the rendering of recent events among the streams.
	rendered renderCache
}

// renderCache keeps the protobuf rendering of recent events by sequence.
// The replica's reader hands every live stream the same events, and
// rendering one (its JSON payload into a Struct) is most of what sending
// it costs the server: with it, a thousand streams render each event
// once. Renderings are read-only once made, so streams share them.
type renderCache struct {
	mu    sync.Mutex
	slots [4096]rendering
}

type rendering struct {
	seq  int64
	wire encodedMessage
}

// get returns the encoding of the SubscribeResponse that carries ev, a
// numbered event of the log: every stream sends the same bytes, so an
// event followed by a hundred subscribers is rendered and encoded once,
// not a hundred times.
func (c *renderCache) get(ev *events.Stored) (encodedMessage, error) {
	seq := ev.Sequence
	slot := &c.slots[seq%int64(len(c.slots))]
	c.mu.Lock()
	r := *slot
	c.mu.Unlock()
	if r.wire != nil && r.seq == seq {
		return r.wire, nil
	}
	wire, err := proto.Marshal(&taskerv1.SubscribeResponse{Message: &taskerv1.SubscribeResponse_Event{Event: eventToProto(ev)}})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	*slot = rendering{seq: seq, wire: wire}
	c.mu.Unlock()
	return wire, nil
}

// errShuttingDown ends the streams that are open when shutdown starts.
var errShuttingDown = &fault.Error{Code: fault.Unavailable, Message: "server shutting down; resume with after_sequence on another replica or after the restart"}

// startPositions maps the contract's start positions.
var startPositions = map[taskerv1.StartPosition]events.Start{
	taskerv1.StartPosition_START_POSITION_UNSPECIFIED:    events.StartNow,
	taskerv1.StartPosition_START_POSITION_NOW:            events.StartNow,
	taskerv1.StartPosition_START_POSITION_BEGINNING:      events.StartBeginning,
	taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE: events.StartAfter,
}

// Subscribe streams the log. Each stream is an events.Subscription: it
// follows the replica's one reader of the log while it keeps up, and reads
// the log itself at its own pace while it is behind, so a client that
// reads slowly only holds its own stream back, through gRPC flow control,
// never the engine or other streams. No transaction is open while it
// sends. At most Config.MaxStreams streams are open at once; one more is
// refused with ResourceExhausted. Shutdown ends every stream with
// Unavailable at once, except one blocked sending to a client that stopped
// reading: the drain timeout ends that one.
func (s *eventService) Subscribe(req *taskerv1.SubscribeRequest, stream grpc.ServerStreamingServer[taskerv1.SubscribeResponse]) error {
	if n := s.streams.Add(1); n > s.maxStreams {
		s.streams.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "%d event streams are open, the most this server serves (--max-streams); retry later or on another replica", s.maxStreams)
	}
	defer s.streams.Add(-1)
	start, ok := startPositions[req.GetStart()]
	if !ok {
		return fault.Invalid("start", "is not a start position: %v", req.GetStart())
	}
	heartbeat := defaultHeartbeat
	if d := req.GetHeartbeatInterval(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fault.Invalid("heartbeat_interval", "is not a valid duration: %v", err)
		}
		if heartbeat = d.AsDuration(); heartbeat < minHeartbeat || heartbeat > maxHeartbeat {
			return fault.Invalid("heartbeat_interval", "must be between %s and %s, got %s", minHeartbeat, maxHeartbeat, heartbeat)
		}
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// End the stream's work when shutdown starts. The goroutine lives as
	// long as the stream.
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()

	sub, err := s.log.Subscribe(ctx, events.SubscriptionOptions{
		Filter:            filterFromProto(req.GetFilter()),
		Start:             start,
		After:             req.GetAfterSequence(),
		UntilTaskFinished: req.GetUntilTaskFinished(),
		Heartbeat:         heartbeat,
	})
	if err != nil {
		return s.streamErr(err)
	}
	err = stream.Send(&taskerv1.SubscribeResponse{Message: &taskerv1.SubscribeResponse_Started{Started: &taskerv1.SubscriptionStarted{
		HeadSequence: sub.Head, StartAfterSequence: sub.StartAfter, OldestSequence: sub.Oldest,
	}}})
	if err != nil {
		return s.streamErr(err)
	}
	err = sub.Run(ctx,
		func(_ context.Context, ev *events.Stored) error {
			wire, err := s.rendered.get(ev)
			if err != nil {
				return err
			}
			// The server's codec sends an encodedMessage as it is.
			return stream.SendMsg(wire)
		},
		func(_ context.Context, scanned int64) error {
			return stream.Send(&taskerv1.SubscribeResponse{Message: &taskerv1.SubscribeResponse_Heartbeat{Heartbeat: &taskerv1.Heartbeat{
				ScannedSequence: scanned, Time: timestamppb.Now(),
			}}})
		})
	return s.streamErr(err)
}

// streamErr is Unavailable for anything that ended a stream because the
// server is shutting down, and err otherwise.
func (s *eventService) streamErr(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-s.stopping:
		return errShuttingDown
	default:
		return err
	}
}

// PublishEvent appends a custom event and answers with it numbered.
func (s *eventService) PublishEvent(ctx context.Context, req *taskerv1.PublishEventRequest) (*taskerv1.PublishEventResponse, error) {
	ev, err := s.log.Publish(ctx, events.Custom{
		Type:          req.GetType(),
		TaskID:        req.GetTaskId(),
		StepID:        req.GetStepId(),
		Payload:       req.GetPayload().AsMap(),
		CorrelationID: correlation.FromContext(ctx),
	})
	if err != nil {
		return nil, err
	}
	return &taskerv1.PublishEventResponse{Event: eventToProto(ev)}, nil
}

// ListEventTypes serves the catalogue, ordered by name.
func (s *eventService) ListEventTypes(context.Context, *taskerv1.ListEventTypesRequest) (*taskerv1.ListEventTypesResponse, error) {
	cat := events.Catalogue()
	resp := &taskerv1.ListEventTypesResponse{EventTypes: make([]*taskerv1.EventType, 0, len(cat))}
	for _, t := range cat {
		et := &taskerv1.EventType{Name: t.Name, Description: t.Description}
		for _, f := range t.Fields {
			et.PayloadFields = append(et.PayloadFields, &taskerv1.EventField{Name: f.Name, Type: f.Type, Description: f.Description})
		}
		resp.EventTypes = append(resp.EventTypes, et)
	}
	return resp, nil
}

// ListEvents pages the log. A page token carries the last sequence scanned,
// so a narrowly filtered listing never rescans what it has passed; the
// token is only valid with the same filter and range.
func (s *eventService) ListEvents(ctx context.Context, req *taskerv1.ListEventsRequest) (*taskerv1.ListEventsResponse, error) {
	size, err := page.Size("page_size", req.GetPageSize(), events.DefaultListLimit, events.MaxListLimit)
	if err != nil {
		return nil, err
	}
	filter := filterFromProto(req.GetFilter())
	after, until := req.GetAfterSequence(), req.GetUntilSequence()
	fingerprint := page.Fingerprint(filter.Namespace, filter.TemplateName, filter.TaskID, filter.CorrelationID, filter.Types, after, until)
	var scanned int64
	resumed, err := page.Decode("page_token", req.GetPageToken(), fingerprint, &scanned)
	switch {
	case err != nil:
		return nil, err
	case resumed && (scanned < after || until > 0 && scanned > until):
		return nil, fault.Invalid("page_token", "is not a page token of this listing")
	case resumed:
		after = scanned
	case after == 0:
		// No resume point: list from the oldest event retained, rather than
		// answer LOG_TRUNCATED to a plain listing once retention has run.
		// A client resuming with a real after_sequence still gets it.
		oldest, err := s.log.Oldest(ctx)
		if err != nil {
			return nil, err
		}
		after = max(oldest-1, 0)
		if until > 0 && after > until {
			after = until
		}
	}
	// The page is bounded by its encoded size too, measured on the events
	// as sent; each is converted once, while it is measured.
	converted := map[*events.Stored]*taskerv1.Event{}
	measure := func(ev *events.Stored) int {
		pe := eventToProto(ev)
		converted[ev] = pe
		return itemSize(pe)
	}
	p, err := s.log.List(ctx, events.Query{Filter: filter, After: after, Until: until, Limit: size, MaxBytes: maxPageBytes, Size: measure})
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.ListEventsResponse{
		Events:          make([]*taskerv1.Event, 0, len(p.Events)),
		ScannedSequence: p.Scanned,
		HeadSequence:    p.Head,
	}
	for _, ev := range p.Events {
		resp.Events = append(resp.Events, converted[ev])
	}
	// The range is exhausted once the scan reached its end: until, or the
	// head at query time. Events numbered later are for the next listing,
	// with after_sequence = scanned_sequence.
	if p.Scanned < p.Head && (until == 0 || p.Scanned < until) {
		resp.NextPageToken = page.Encode(fingerprint, p.Scanned)
	}
	return resp, nil
}

// filterFromProto copies a request's filter; events.ParseFilter validates
// it, naming the fields as the request does.
func filterFromProto(f *taskerv1.EventFilter) events.Filter {
	return events.Filter{
		Namespace:     f.GetNamespace(),
		TemplateName:  f.GetTemplateName(),
		TaskID:        f.GetTaskId(),
		CorrelationID: f.GetCorrelationId(),
		Types:         f.GetTypes(),
	}
}

// eventToProto renders a numbered event of the log.
func eventToProto(ev *events.Stored) *taskerv1.Event {
	out := &taskerv1.Event{
		Type:            ev.Type,
		CorrelationId:   ev.CorrelationID,
		Namespace:       ev.Namespace,
		TemplateName:    ev.TemplateName,
		TemplateVersion: ev.TemplateVersion,
		Payload:         document(ev.Payload),
		Time:            timestamppb.New(ev.CreatedAt),
		Sequence:        ev.Sequence,
	}
	if ev.TaskID != nil {
		out.TaskId = ev.TaskID.String()
	}
	if ev.StepID != nil {
		out.StepId = ev.StepID.String()
	}
	return out
}
