package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Scope is a resource:action permission a token holds.
type Scope string

// The scopes. Admin holds every other scope on every namespace.
const (
	TemplatesRead  Scope = "templates:read"
	TemplatesWrite Scope = "templates:write"
	TasksRead      Scope = "tasks:read"
	TasksWrite     Scope = "tasks:write"
	TasksOperate   Scope = "tasks:operate"
	StepsRead      Scope = "steps:read"
	StepsWork      Scope = "steps:work"
	StepsOperate   Scope = "steps:operate"
	EventsRead     Scope = "events:read"
	EventsPublish  Scope = "events:publish"
	// MetricsRead reads the admin port's /metrics, which reveals the
	// namespaces and handlers in use and the load on them.
	MetricsRead Scope = "metrics:read"
	Admin       Scope = "admin"
)

// Scopes lists every scope, in the order the documentation gives them.
var Scopes = []Scope{
	TemplatesRead, TemplatesWrite, TasksRead, TasksWrite, TasksOperate,
	StepsRead, StepsWork, StepsOperate, EventsRead, EventsPublish, MetricsRead, Admin,
}

// AllNamespaces in a token's namespaces lets it act on every namespace.
const AllNamespaces = "*"

// ParseScopes parses a comma-separated list such as "tasks:read,steps:work",
// refusing unknown scopes and an empty list.
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		sc := Scope(part)
		if !slices.Contains(Scopes, sc) {
			return nil, fmt.Errorf("unknown scope %q; want one of %s", cut(part), joinScopes(Scopes))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scope given; want one or more of %s", joinScopes(Scopes))
	}
	return out, nil
}

func joinScopes(ss []Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// cut shortens a value quoted in an error, so a message never echoes a
// long input.
func cut(s string) string {
	const maxLen = 40
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "…"
}
