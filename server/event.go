package server

import (
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// eventService implements tasker.v1.EventService. The log readers come with
// the event log and answer Unimplemented until then.
type eventService struct {
	taskerv1.UnimplementedEventServiceServer
}
