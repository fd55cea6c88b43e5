package server

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/page"
)

// eventService implements tasker.v1.EventService over the event log.
// Subscribe, PublishEvent and ListEventTypes answer Unimplemented until
// they are built.
type eventService struct {
	taskerv1.UnimplementedEventServiceServer
	log *events.Log
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
	p, err := s.log.List(ctx, events.Query{Filter: filter, After: after, Until: until, Limit: size})
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.ListEventsResponse{
		Events:          make([]*taskerv1.Event, 0, len(p.Events)),
		ScannedSequence: p.Scanned,
		HeadSequence:    p.Head,
	}
	for _, ev := range p.Events {
		resp.Events = append(resp.Events, eventToProto(ev))
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
func eventToProto(ev *ent.Event) *taskerv1.Event {
	out := &taskerv1.Event{
		Type:            ev.Type,
		CorrelationId:   ev.CorrelationID,
		Namespace:       ev.Namespace,
		TemplateName:    ev.TemplateName,
		TemplateVersion: ev.TemplateVersion,
		Payload:         document(ev.Payload),
		Time:            timestamppb.New(ev.CreatedAt),
	}
	if ev.Sequence != nil {
		out.Sequence = *ev.Sequence
	}
	if ev.TaskID != nil {
		out.TaskId = ev.TaskID.String()
	}
	if ev.StepID != nil {
		out.StepId = ev.StepID.String()
	}
	return out
}
