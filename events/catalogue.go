package events

import (
	"slices"
	"strconv"
	"strings"
)

// Event types emitted by Tasker itself. Custom events published by workers
// may not start with the reserved prefixes task., step., workflow. or
// registry. (see ValidateCustomType).
const (
	TaskCreated          = "task.created"
	TaskStarted          = "task.started"
	TaskCompleted        = "task.completed"
	TaskFailed           = "task.failed"
	TaskResumed          = "task.resumed"
	TaskResolvedManually = "task.resolved_manually"
	TaskCancelled        = "task.cancelled"

	StepEnqueued         = "step.enqueued"
	StepClaimed          = "step.claimed"
	StepCompleted        = "step.completed"
	StepRetryScheduled   = "step.retry_scheduled"
	StepFailed           = "step.failed"
	StepReleased         = "step.released"
	StepRetryRequested   = "step.retry_requested"
	StepResolvedManually = "step.resolved_manually"
	StepCancelled        = "step.cancelled"

	WorkflowDuplicateDetected = "workflow.duplicate_detected"

	RegistryTemplateRegistered = "registry.template_registered"
	RegistryTemplateReplaced   = "registry.template_replaced"
	RegistryWorkerSeen         = "registry.worker_seen"
)

// JSON types of payload fields, as EventField.type names them.
const (
	JSONString  = "string"
	JSONInteger = "integer"
	JSONNumber  = "number"
	JSONBoolean = "boolean"
	JSONObject  = "object"
	JSONArray   = "array"
)

// Field documents one payload field of an event type.
type Field struct {
	// Name is the payload key.
	Name string
	// Type is the JSON type: one of the JSON* constants.
	Type string
	// Description says what it holds.
	Description string
}

// Type documents one built-in event type: when it is emitted and the
// fields of its payload. Every event of the type carries exactly these
// payload fields, no more and no fewer (the catalogue test holds the
// emitting code to it).
type Type struct {
	// Name is the event type, e.g. "step.completed".
	Name string
	// Description says when the event is emitted.
	Description string
	// Fields are the payload's fields, in the order they are documented.
	Fields []Field
}

// The fields every step event starts with: recordStep in the engine sets
// them on every step transition.
var (
	fieldStepName  = Field{"step_name", JSONString, "The step's name in its template."}
	fieldHandler   = Field{"handler", JSONString, "The handler that runs the step."}
	fieldFromState = Field{"from_state", JSONString, "The state the step left, e.g. \"in_progress\"."}
	fieldAttempt   = Field{"attempt", JSONInteger, "Attempts the step has used after this change: for step.claimed the number of the attempt that starts; 0 before the first claim."}
	fieldReason    = Field{"reason", JSONString, "Why the change happened, e.g. \"parents done\", \"lease expired\" or the operator's reason."}

	fieldErrorMessage = Field{"error_message", JSONString, "The failed attempt's error message (the worker's, or the reaper's for an expired lease or timeout)."}
	fieldErrorType    = Field{"error_type", JSONString, "The failed attempt's error type, as the worker classified it (\"lease_expired\" and \"timeout\" come from the reaper); may be empty."}
	fieldAvailableAt  = Field{"available_at", JSONString, "When the step becomes claimable (RFC 3339 with nanoseconds, UTC)."}

	fieldTaskFromState = Field{"from_state", JSONString, "The state the task left, e.g. \"in_progress\"."}
	fieldTaskReason    = Field{"reason", JSONString, "Why the change happened, e.g. \"every step is done\" or the operator's reason."}
)

// stepFields returns the common step fields followed by extra.
func stepFields(reason bool, extra ...Field) []Field {
	fs := []Field{fieldStepName, fieldHandler, fieldFromState, fieldAttempt}
	if reason {
		fs = append(fs, fieldReason)
	}
	return append(fs, extra...)
}

// taskFields returns the common task transition fields followed by extra.
func taskFields(extra ...Field) []Field {
	return append([]Field{fieldTaskFromState, fieldTaskReason}, extra...)
}

// catalogue is every built-in type, ordered by name. It is built once and
// never changes; Catalogue hands out copies.
var catalogue = sortedTypes([]Type{
	{
		Name:        TaskCreated,
		Description: "CreateTask (or an entry of BatchCreateTasks) created a new task: the task and all its steps are written in pending, and its root steps are enqueued in the same transaction (one step.enqueued each).",
		Fields: []Field{
			{"state", JSONString, "The task's state after creation: \"pending\"."},
			{"priority", JSONInteger, "The task's priority; higher runs first."},
			{"step_count", JSONInteger, "How many steps the task has."},
		},
	},
	{
		Name:        TaskStarted,
		Description: "The first claim of one of the task's steps moved it from pending to in_progress.",
		Fields:      taskFields(),
	},
	{
		Name:        TaskCompleted,
		Description: "Every step of the task is complete or resolved manually; the task is complete.",
		Fields:      taskFields(Field{"step_count", JSONInteger, "How many steps the task has."}),
	},
	{
		Name:        TaskFailed,
		Description: "Nothing can progress any more and some step is in error or cancelled; the task is in error (RetryTask, RetryStep or ResolveStep can revive it).",
		Fields: taskFields(
			Field{"error_steps", JSONInteger, "Steps in error."},
			Field{"cancelled_steps", JSONInteger, "Steps cancelled."},
			Field{"blocked_steps", JSONInteger, "Steps still pending behind a failed or cancelled parent."},
		),
	},
	{
		Name:        TaskResumed,
		Description: "An operator's RetryTask, RetryStep or ResolveStep made progress possible again for a task in error; it is in_progress again.",
		Fields:      taskFields(),
	},
	{
		Name:        TaskResolvedManually,
		Description: "ResolveTask closed a task in error by hand.",
		Fields:      taskFields(),
	},
	{
		Name:        TaskCancelled,
		Description: "CancelTask cancelled the task; each of its unfinished steps got a step.cancelled event in the same transaction.",
		Fields:      taskFields(Field{"cancelled_steps", JSONInteger, "How many unfinished steps were cancelled with it."}),
	},
	{
		Name: StepEnqueued,
		Description: "The step became claimable: a root step at task creation (reason \"root step\"), a step whose parents are all done (\"parents done\"), " +
			"or a step waiting for retry whose due time came when it was claimed (\"retry due\").",
		Fields: stepFields(true, fieldAvailableAt),
	},
	{
		Name:        StepClaimed,
		Description: "ClaimSteps handed the step to a worker with a new lease; the attempt starts.",
		Fields: stepFields(false,
			Field{"worker_id", JSONString, "The worker that claimed the step."},
			Field{"lease_expires_at", JSONString, "When the lease expires unless extended (RFC 3339 with nanoseconds, UTC)."},
		),
	},
	{
		Name:        StepCompleted,
		Description: "CompleteStep recorded the attempt's result; the step is complete (its result is read with GetStep).",
		Fields:      stepFields(false),
	},
	{
		Name:        StepRetryScheduled,
		Description: "An attempt failed with attempts left: a retryable FailStep, an expired lease or an execution timeout. The step waits for its backoff.",
		Fields:      stepFields(true, fieldErrorMessage, fieldErrorType, fieldAvailableAt),
	},
	{
		Name:        StepFailed,
		Description: "An attempt failed for good: a non-retryable FailStep, or no attempt left after a failure, an expired lease or a timeout. The step is in error.",
		Fields:      stepFields(true, fieldErrorMessage, fieldErrorType),
	},
	{
		Name:        StepReleased,
		Description: "ReleaseStep gave a claimed step back unrun; it is enqueued again at once and the attempt is not counted.",
		Fields:      stepFields(true),
	},
	{
		Name:        StepRetryRequested,
		Description: "RetryStep or RetryTask put a step in error back to work; it is enqueued with its attempt budget extended.",
		Fields:      stepFields(true, Field{"attempt_budget", JSONInteger, "Attempts the step may use in all, after the extension."}),
	},
	{
		Name:        StepResolvedManually,
		Description: "ResolveStep gave the step a result by hand; its children run as if it had completed.",
		Fields:      stepFields(true),
	},
	{
		Name:        StepCancelled,
		Description: "CancelStep or CancelTask cancelled the step; a worker holding it gets Aborted/CANCELLED on its next call.",
		Fields:      stepFields(true),
	},
	{
		Name: WorkflowDuplicateDetected,
		Description: "CreateTask (or an entry of BatchCreateTasks) was answered with an existing task under the template's identity strategy. " +
			"The event carries the existing task's ids and correlation id.",
		Fields: []Field{
			{"idempotency_key", JSONString, "The request's idempotency key; empty when the duplicate was found by the strict identity of its context."},
			{"request_correlation_id", JSONString, "The correlation id of the CreateTask or BatchCreateTasks call that was deduplicated."},
		},
	},
	{
		Name:        RegistryTemplateRegistered,
		Description: "RegisterTaskTemplate (or start-up loading) stored a new template version. Registering identical content again records nothing.",
		Fields: []Field{
			{"content_hash", JSONString, "The hash of the template's content."},
			{"step_count", JSONInteger, "How many steps the template has."},
		},
	},
	{
		Name:        RegistryTemplateReplaced,
		Description: "RegisterTaskTemplate with replace overwrote an existing version's different content. Running tasks keep what they were created with.",
		Fields: []Field{
			{"content_hash", JSONString, "The hash of the new content."},
			{"step_count", JSONInteger, "How many steps the new content has."},
			{"previous_content_hash", JSONString, "The hash of the content it replaced."},
		},
	},
	{
		Name:        RegistryWorkerSeen,
		Description: "A worker claimed for the first time, or with a different set of handlers than before.",
		Fields: []Field{
			{"worker_id", JSONString, "The worker's id."},
			{"handlers", JSONArray, "The (namespace, handler) pairs it serves: objects with \"namespace\" and \"handler\"."},
			{"first_seen", JSONBoolean, "True when the worker was never seen before; false when its handler set changed."},
		},
	},
})

func sortedTypes(ts []Type) []Type {
	slices.SortFunc(ts, func(a, b Type) int { return strings.Compare(a.Name, b.Name) })
	return ts
}

// Catalogue returns every built-in event type, ordered by name. The result
// is the caller's to keep.
func Catalogue() []Type {
	out := make([]Type, len(catalogue))
	for i, t := range catalogue {
		t.Fields = slices.Clone(t.Fields)
		out[i] = t
	}
	return out
}

// LookupType returns the built-in type named name.
func LookupType(name string) (Type, bool) {
	i, ok := slices.BinarySearchFunc(catalogue, name, func(t Type, name string) int { return strings.Compare(t.Name, name) })
	if !ok {
		return Type{}, false
	}
	t := catalogue[i]
	t.Fields = slices.Clone(t.Fields)
	return t, true
}

// ReservedPrefixes are the type prefixes of Tasker's own events; custom
// events may not use them.
var ReservedPrefixes = []string{"task.", "step.", "workflow.", "registry."}

// Bounds of custom events.
const (
	// MaxCustomTypeBytes bounds a custom event type.
	MaxCustomTypeBytes = 128
	// MaxCustomTypeParts bounds the dotted parts of a custom event type.
	MaxCustomTypeParts = 8
	// MaxCustomPayloadBytes bounds a custom event's payload, as JSON.
	MaxCustomPayloadBytes = 64 << 10
)

// ValidateCustomType checks the type of a custom event: lowercase dotted
// parts of [a-z0-9_], 2 to MaxCustomTypeParts of them, at most
// MaxCustomTypeBytes, not starting with a reserved prefix. The error is a
// plain description, for the caller to attach to its field.
func ValidateCustomType(typ string) error {
	switch {
	case typ == "":
		return patternError("is required, e.g. \"billing.invoice_sent\"")
	case len(typ) > MaxCustomTypeBytes:
		return patternError("is longer than " + strconv.Itoa(MaxCustomTypeBytes) + " bytes")
	}
	parts := strings.Split(typ, ".")
	if len(parts) < 2 || len(parts) > MaxCustomTypeParts {
		return patternError("must have 2 to " + strconv.Itoa(MaxCustomTypeParts) + " dotted parts, like \"billing.invoice_sent\"")
	}
	for _, p := range parts {
		if p == "" {
			return patternError("has an empty part; use lowercase dotted parts like \"billing.invoice_sent\"")
		}
		for _, r := range p {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
				return patternError("may hold only lowercase letters, digits, \"_\" and dots, like \"billing.invoice_sent\"")
			}
		}
	}
	for _, prefix := range ReservedPrefixes {
		if strings.HasPrefix(typ, prefix) {
			return patternError("starts with the reserved prefix \"" + prefix + "\" of Tasker's own events")
		}
	}
	return nil
}
