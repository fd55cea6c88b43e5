package events

// Event types emitted by Tasker itself. Custom events published by workers
// may not start with the reserved prefixes task., step., workflow. or
// registry.
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
