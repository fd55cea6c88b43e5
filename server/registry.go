package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
)

// registryService implements tasker.v1.RegistryService over the template
// store and, for ListHandlers, the engine's worker records.
type registryService struct {
	taskerv1.UnimplementedRegistryServiceServer
	templates *registry.Store
	engine    *engine.Engine
	// appended wakes the event log's readers after a registration that
	// appended an event (registry.template_registered or _replaced).
	appended func()
}

func (s *registryService) RegisterTaskTemplate(ctx context.Context, req *taskerv1.RegisterTaskTemplateRequest) (*taskerv1.RegisterTaskTemplateResponse, error) {
	if req.GetTemplate() == nil {
		return nil, fault.Invalid("template", "is required")
	}
	tpl, outcome, err := s.templates.Register(ctx, req.GetTemplate(), req.GetReplace())
	if err != nil {
		return nil, err
	}
	s.appended()
	return &taskerv1.RegisterTaskTemplateResponse{Template: tpl, Outcome: outcome}, nil
}

func (s *registryService) GetTaskTemplate(ctx context.Context, req *taskerv1.GetTaskTemplateRequest) (*taskerv1.GetTaskTemplateResponse, error) {
	tpl, err := s.templates.Get(ctx, req.GetNamespace(), req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &taskerv1.GetTaskTemplateResponse{Template: tpl}, nil
}

func (s *registryService) ListTaskTemplates(ctx context.Context, req *taskerv1.ListTaskTemplatesRequest) (*taskerv1.ListTaskTemplatesResponse, error) {
	tpls, next, err := s.templates.List(ctx, registry.ListOptions{
		Namespace: req.GetNamespace(), Name: req.GetName(), PageSize: req.GetPageSize(), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	return &taskerv1.ListTaskTemplatesResponse{Templates: tpls, NextPageToken: next}, nil
}

func (s *registryService) ListNamespaces(ctx context.Context, req *taskerv1.ListNamespacesRequest) (*taskerv1.ListNamespacesResponse, error) {
	nss, next, err := s.templates.Namespaces(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.ListNamespacesResponse{NextPageToken: next}
	for _, ns := range nss {
		resp.Namespaces = append(resp.Namespaces, &taskerv1.Namespace{
			Name:          ns.Name,
			TemplateCount: int32(ns.TemplateCount), //nolint:gosec // bounded by the number of rows
			CreateTime:    timestamppb.New(ns.CreateTime),
		})
	}
	return resp, nil
}

func (s *registryService) ListHandlers(ctx context.Context, req *taskerv1.ListHandlersRequest) (*taskerv1.ListHandlersResponse, error) {
	var within time.Duration
	if d := req.GetActiveWithin(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fault.Invalid("active_within", "is not a valid duration: %v", err)
		}
		within = d.AsDuration()
	}
	hs, err := s.engine.ListHandlers(ctx, req.GetNamespace(), within)
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.ListHandlersResponse{}
	for _, h := range hs {
		info := &taskerv1.HandlerInfo{
			Handler:         &taskerv1.HandlerRef{Namespace: h.Namespace, Handler: h.Handler},
			Builtin:         h.Builtin,
			UsedByTemplates: h.UsedByTemplates,
		}
		if !h.LastSeen.IsZero() {
			info.LastSeenTime = timestamppb.New(h.LastSeen)
		}
		for _, w := range h.Workers {
			info.Workers = append(info.Workers, &taskerv1.WorkerInfo{WorkerId: w.ID, LastSeenTime: timestamppb.New(w.LastSeen)})
		}
		resp.Handlers = append(resp.Handlers, info)
	}
	return resp, nil
}
