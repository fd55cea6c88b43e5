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

class ExecutionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
