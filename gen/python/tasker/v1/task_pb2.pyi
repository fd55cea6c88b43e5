from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tasker.v1 import common_pb2 as _common_pb2
from tasker.v1 import step_pb2 as _step_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EXECUTION_STATUS_BLOCKED_BY_FAILURES: ExecutionStatus
EXECUTION_STATUS_COMPLETE: ExecutionStatus
EXECUTION_STATUS_HAS_READY_STEPS: ExecutionStatus
EXECUTION_STATUS_PROCESSING: ExecutionStatus
EXECUTION_STATUS_SCHEDULED: ExecutionStatus
EXECUTION_STATUS_UNSPECIFIED: ExecutionStatus
EXECUTION_STATUS_WAITING_FOR_RETRY: ExecutionStatus

class BatchCreateTasksRequest(_message.Message):
    __slots__ = ["tasks"]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[CreateTaskRequest]
    def __init__(self, tasks: _Optional[_Iterable[_Union[CreateTaskRequest, _Mapping]]] = ...) -> None: ...

class BatchCreateTasksResponse(_message.Message):
    __slots__ = ["outcomes"]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[CreateTaskOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[CreateTaskOutcome, _Mapping]]] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ["id", "reason"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTaskResponse(_message.Message):
    __slots__ = ["task"]
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class CreateTaskOutcome(_message.Message):
    __slots__ = ["duplicate", "result", "task"]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    result: _common_pb2.EntryResult
    task: Task
    def __init__(self, result: _Optional[_Union[_common_pb2.EntryResult, _Mapping]] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., duplicate: bool = ...) -> None: ...

class CreateTaskRequest(_message.Message):
    __slots__ = ["context", "idempotency_key", "initiator", "name", "namespace", "parent_task_id", "priority", "reason", "run_at", "source_system", "tags", "version"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    context: _struct_pb2.Struct
    idempotency_key: str
    initiator: str
    name: str
    namespace: str
    parent_task_id: str
    priority: int
    reason: str
    run_at: _timestamp_pb2.Timestamp
    source_system: str
    tags: _containers.ScalarMap[str, str]
    version: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., initiator: _Optional[str] = ..., source_system: _Optional[str] = ..., reason: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., run_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., parent_task_id: _Optional[str] = ...) -> None: ...

class CreateTaskResponse(_message.Message):
    __slots__ = ["duplicate", "task"]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., duplicate: bool = ...) -> None: ...

class DurationPercentiles(_message.Message):
    __slots__ = ["max", "p50", "p95", "p99", "sample_size"]
    MAX_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    max: _duration_pb2.Duration
    p50: _duration_pb2.Duration
    p95: _duration_pb2.Duration
    p99: _duration_pb2.Duration
    sample_size: int
    def __init__(self, p50: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., p95: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., p99: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., max: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., sample_size: _Optional[int] = ...) -> None: ...

class GetTaskGraphRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetTaskGraphResponse(_message.Message):
    __slots__ = ["dot", "edges", "mermaid", "nodes", "task_id"]
    DOT_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    MERMAID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    dot: str
    edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    mermaid: str
    nodes: _containers.RepeatedCompositeFieldContainer[GraphNode]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[GraphNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ..., dot: _Optional[str] = ..., mermaid: _Optional[str] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ["task"]
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class GetTaskStatsRequest(_message.Message):
    __slots__ = ["end_time", "namespace", "slowest_limit", "start_time"]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SLOWEST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    end_time: _timestamp_pb2.Timestamp
    namespace: str
    slowest_limit: int
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, namespace: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., slowest_limit: _Optional[int] = ...) -> None: ...

class GetTaskStatsResponse(_message.Message):
    __slots__ = ["end_time", "handlers", "handlers_without_workers", "namespace", "sampled", "slowest_steps", "slowest_tasks", "start_time", "step_attempts", "step_counts", "steps_per_minute", "task_counts", "task_duration", "tasks_finished", "tasks_per_minute"]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_WITHOUT_WORKERS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    SLOWEST_STEPS_FIELD_NUMBER: _ClassVar[int]
    SLOWEST_TASKS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    STEP_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STEP_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FINISHED_FIELD_NUMBER: _ClassVar[int]
    TASKS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TASK_DURATION_FIELD_NUMBER: _ClassVar[int]
    end_time: _timestamp_pb2.Timestamp
    handlers: _containers.RepeatedCompositeFieldContainer[HandlerStats]
    handlers_without_workers: _containers.RepeatedScalarFieldContainer[str]
    namespace: str
    sampled: bool
    slowest_steps: _containers.RepeatedCompositeFieldContainer[SlowStep]
    slowest_tasks: _containers.RepeatedCompositeFieldContainer[SlowTask]
    start_time: _timestamp_pb2.Timestamp
    step_attempts: int
    step_counts: StepCounts
    steps_per_minute: float
    task_counts: TaskCounts
    task_duration: DurationPercentiles
    tasks_finished: int
    tasks_per_minute: float
    def __init__(self, namespace: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., tasks_finished: _Optional[int] = ..., tasks_per_minute: _Optional[float] = ..., step_attempts: _Optional[int] = ..., steps_per_minute: _Optional[float] = ..., task_duration: _Optional[_Union[DurationPercentiles, _Mapping]] = ..., handlers: _Optional[_Iterable[_Union[HandlerStats, _Mapping]]] = ..., slowest_tasks: _Optional[_Iterable[_Union[SlowTask, _Mapping]]] = ..., slowest_steps: _Optional[_Iterable[_Union[SlowStep, _Mapping]]] = ..., task_counts: _Optional[_Union[TaskCounts, _Mapping]] = ..., step_counts: _Optional[_Union[StepCounts, _Mapping]] = ..., handlers_without_workers: _Optional[_Iterable[str]] = ..., sampled: bool = ...) -> None: ...

class GraphEdge(_message.Message):
    __slots__ = ["child", "parent"]
    CHILD_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    child: str
    parent: str
    def __init__(self, parent: _Optional[str] = ..., child: _Optional[str] = ...) -> None: ...

class GraphNode(_message.Message):
    __slots__ = ["attempts", "handler", "max_attempts", "name", "state", "step_id"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    handler: str
    max_attempts: int
    name: str
    state: _common_pb2.StepState
    step_id: str
    def __init__(self, step_id: _Optional[str] = ..., name: _Optional[str] = ..., handler: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.StepState, str]] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class HandlerStats(_message.Message):
    __slots__ = ["attempts", "completed", "duration", "error_rate", "failed", "handler"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    completed: int
    duration: DurationPercentiles
    error_rate: float
    failed: int
    handler: str
    def __init__(self, handler: _Optional[str] = ..., attempts: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., error_rate: _Optional[float] = ..., duration: _Optional[_Union[DurationPercentiles, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ["correlation_id", "create_time_from", "create_time_to", "namespace", "page_size", "page_token", "parent_task_id", "states", "tags", "template_name"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_TO_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    create_time_from: _timestamp_pb2.Timestamp
    create_time_to: _timestamp_pb2.Timestamp
    namespace: str
    page_size: int
    page_token: str
    parent_task_id: str
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.TaskState]
    tags: _containers.ScalarMap[str, str]
    template_name: str
    def __init__(self, namespace: _Optional[str] = ..., template_name: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_common_pb2.TaskState, str]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., create_time_from: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., create_time_to: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., correlation_id: _Optional[str] = ..., parent_task_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ["next_page_token", "tasks"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveTaskRequest(_message.Message):
    __slots__ = ["id", "reason"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveTaskResponse(_message.Message):
    __slots__ = ["task"]
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class RetryTaskRequest(_message.Message):
    __slots__ = ["id", "reason"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RetryTaskResponse(_message.Message):
    __slots__ = ["task"]
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class SlowStep(_message.Message):
    __slots__ = ["attempt", "duration", "finish_time", "handler", "name", "state", "step_id", "task_id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    duration: _duration_pb2.Duration
    finish_time: _timestamp_pb2.Timestamp
    handler: str
    name: str
    state: _common_pb2.StepState
    step_id: str
    task_id: str
    def __init__(self, step_id: _Optional[str] = ..., task_id: _Optional[str] = ..., name: _Optional[str] = ..., handler: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.StepState, str]] = ..., duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., finish_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SlowTask(_message.Message):
    __slots__ = ["duration", "finish_time", "state", "task_id", "template_name"]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    finish_time: _timestamp_pb2.Timestamp
    state: _common_pb2.TaskState
    task_id: str
    template_name: str
    def __init__(self, task_id: _Optional[str] = ..., template_name: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.TaskState, str]] = ..., duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., finish_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StepCounts(_message.Message):
    __slots__ = ["cancelled", "complete", "enqueued", "error", "in_progress", "pending", "resolved_manually", "total", "waiting_for_retry"]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_MANUALLY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_RETRY_FIELD_NUMBER: _ClassVar[int]
    cancelled: int
    complete: int
    enqueued: int
    error: int
    in_progress: int
    pending: int
    resolved_manually: int
    total: int
    waiting_for_retry: int
    def __init__(self, total: _Optional[int] = ..., pending: _Optional[int] = ..., enqueued: _Optional[int] = ..., in_progress: _Optional[int] = ..., waiting_for_retry: _Optional[int] = ..., complete: _Optional[int] = ..., error: _Optional[int] = ..., cancelled: _Optional[int] = ..., resolved_manually: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ["completion_percentage", "context", "correlation_id", "create_time", "execution_status", "finish_time", "id", "idempotency_key", "initiator", "namespace", "parent_task_id", "priority", "reason", "run_at", "source_system", "start_time", "state", "step_counts", "steps", "tags", "template_name", "template_version", "update_time"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMPLETION_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_STATUS_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    completion_percentage: float
    context: _struct_pb2.Struct
    correlation_id: str
    create_time: _timestamp_pb2.Timestamp
    execution_status: ExecutionStatus
    finish_time: _timestamp_pb2.Timestamp
    id: str
    idempotency_key: str
    initiator: str
    namespace: str
    parent_task_id: str
    priority: int
    reason: str
    run_at: _timestamp_pb2.Timestamp
    source_system: str
    start_time: _timestamp_pb2.Timestamp
    state: _common_pb2.TaskState
    step_counts: StepCounts
    steps: _containers.RepeatedCompositeFieldContainer[_step_pb2.Step]
    tags: _containers.ScalarMap[str, str]
    template_name: str
    template_version: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., namespace: _Optional[str] = ..., template_name: _Optional[str] = ..., template_version: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.TaskState, str]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., correlation_id: _Optional[str] = ..., parent_task_id: _Optional[str] = ..., priority: _Optional[int] = ..., run_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., initiator: _Optional[str] = ..., source_system: _Optional[str] = ..., reason: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., step_counts: _Optional[_Union[StepCounts, _Mapping]] = ..., completion_percentage: _Optional[float] = ..., execution_status: _Optional[_Union[ExecutionStatus, str]] = ..., steps: _Optional[_Iterable[_Union[_step_pb2.Step, _Mapping]]] = ...) -> None: ...

class TaskCounts(_message.Message):
    __slots__ = ["cancelled", "complete", "error", "in_progress", "pending", "resolved_manually", "total"]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_MANUALLY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    cancelled: int
    complete: int
    error: int
    in_progress: int
    pending: int
    resolved_manually: int
    total: int
    def __init__(self, total: _Optional[int] = ..., pending: _Optional[int] = ..., in_progress: _Optional[int] = ..., complete: _Optional[int] = ..., error: _Optional[int] = ..., cancelled: _Optional[int] = ..., resolved_manually: _Optional[int] = ...) -> None: ...

class ExecutionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
