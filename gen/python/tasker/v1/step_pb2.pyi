from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tasker.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
STEP_VIEW_BASIC: StepView
STEP_VIEW_FULL: StepView
STEP_VIEW_UNSPECIFIED: StepView

class BatchCompleteStepsRequest(_message.Message):
    __slots__ = ["completions"]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[StepCompletion]
    def __init__(self, completions: _Optional[_Iterable[_Union[StepCompletion, _Mapping]]] = ...) -> None: ...

class BatchCompleteStepsResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntryResult]
    def __init__(self, results: _Optional[_Iterable[_Union[_common_pb2.EntryResult, _Mapping]]] = ...) -> None: ...

class BatchFailStepsRequest(_message.Message):
    __slots__ = ["failures"]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    failures: _containers.RepeatedCompositeFieldContainer[StepFailure]
    def __init__(self, failures: _Optional[_Iterable[_Union[StepFailure, _Mapping]]] = ...) -> None: ...

class BatchFailStepsResponse(_message.Message):
    __slots__ = ["outcomes"]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[FailureOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[FailureOutcome, _Mapping]]] = ...) -> None: ...

class CancelStepRequest(_message.Message):
    __slots__ = ["id", "reason"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelStepResponse(_message.Message):
    __slots__ = ["step"]
    STEP_FIELD_NUMBER: _ClassVar[int]
    step: Step
    def __init__(self, step: _Optional[_Union[Step, _Mapping]] = ...) -> None: ...

class ClaimStepsRequest(_message.Message):
    __slots__ = ["handlers", "max_steps", "wait", "worker_id"]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    handlers: _containers.RepeatedCompositeFieldContainer[_common_pb2.HandlerRef]
    max_steps: int
    wait: _duration_pb2.Duration
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ..., handlers: _Optional[_Iterable[_Union[_common_pb2.HandlerRef, _Mapping]]] = ..., max_steps: _Optional[int] = ..., wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClaimStepsResponse(_message.Message):
    __slots__ = ["steps"]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[ClaimedStep]
    def __init__(self, steps: _Optional[_Iterable[_Union[ClaimedStep, _Mapping]]] = ...) -> None: ...

class ClaimedStep(_message.Message):
    __slots__ = ["attempt", "config", "context", "correlation_id", "execution_deadline", "handler", "lease_expires_at", "lease_token", "max_attempts", "parent_results", "priority", "step_id", "step_name", "task_id", "template_name", "template_version", "traceparent"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PARENT_RESULTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    config: _struct_pb2.Struct
    context: _struct_pb2.Struct
    correlation_id: str
    execution_deadline: _timestamp_pb2.Timestamp
    handler: _common_pb2.HandlerRef
    lease_expires_at: _timestamp_pb2.Timestamp
    lease_token: str
    max_attempts: int
    parent_results: _containers.RepeatedCompositeFieldContainer[ParentResult]
    priority: int
    step_id: str
    step_name: str
    task_id: str
    template_name: str
    template_version: str
    traceparent: str
    def __init__(self, step_id: _Optional[str] = ..., task_id: _Optional[str] = ..., handler: _Optional[_Union[_common_pb2.HandlerRef, _Mapping]] = ..., step_name: _Optional[str] = ..., template_name: _Optional[str] = ..., template_version: _Optional[str] = ..., correlation_id: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., parent_results: _Optional[_Iterable[_Union[ParentResult, _Mapping]]] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., lease_token: _Optional[str] = ..., lease_expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., execution_deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., traceparent: _Optional[str] = ...) -> None: ...

class CompleteStepRequest(_message.Message):
    __slots__ = ["lease_token", "result", "step_id"]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    lease_token: str
    result: _struct_pb2.Struct
    step_id: str
    def __init__(self, step_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CompleteStepResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ExtendLeaseRequest(_message.Message):
    __slots__ = ["extend_by", "leases", "worker_id"]
    EXTEND_BY_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    extend_by: _duration_pb2.Duration
    leases: _containers.RepeatedCompositeFieldContainer[StepLease]
    worker_id: str
    def __init__(self, leases: _Optional[_Iterable[_Union[StepLease, _Mapping]]] = ..., extend_by: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ExtendLeaseResponse(_message.Message):
    __slots__ = ["extensions"]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    extensions: _containers.RepeatedCompositeFieldContainer[LeaseExtension]
    def __init__(self, extensions: _Optional[_Iterable[_Union[LeaseExtension, _Mapping]]] = ...) -> None: ...

class FailStepRequest(_message.Message):
    __slots__ = ["error", "lease_token", "non_retryable", "retry_after", "step_id"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    error: StepError
    lease_token: str
    non_retryable: bool
    retry_after: _duration_pb2.Duration
    step_id: str
    def __init__(self, step_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., error: _Optional[_Union[StepError, _Mapping]] = ..., non_retryable: bool = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class FailStepResponse(_message.Message):
    __slots__ = ["available_at", "state"]
    AVAILABLE_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    available_at: _timestamp_pb2.Timestamp
    state: _common_pb2.StepState
    def __init__(self, state: _Optional[_Union[_common_pb2.StepState, str]] = ..., available_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FailureOutcome(_message.Message):
    __slots__ = ["available_at", "result", "state"]
    AVAILABLE_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    available_at: _timestamp_pb2.Timestamp
    result: _common_pb2.EntryResult
    state: _common_pb2.StepState
    def __init__(self, result: _Optional[_Union[_common_pb2.EntryResult, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.StepState, str]] = ..., available_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStepRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetStepResponse(_message.Message):
    __slots__ = ["step"]
    STEP_FIELD_NUMBER: _ClassVar[int]
    step: Step
    def __init__(self, step: _Optional[_Union[Step, _Mapping]] = ...) -> None: ...

class LeaseExtension(_message.Message):
    __slots__ = ["lease_expires_at", "result"]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    lease_expires_at: _timestamp_pb2.Timestamp
    result: _common_pb2.EntryResult
    def __init__(self, result: _Optional[_Union[_common_pb2.EntryResult, _Mapping]] = ..., lease_expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListStepsRequest(_message.Message):
    __slots__ = ["handler", "namespace", "page_size", "page_token", "states", "task_id", "view"]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    handler: str
    namespace: str
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.StepState]
    task_id: str
    view: StepView
    def __init__(self, task_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_common_pb2.StepState, str]]] = ..., namespace: _Optional[str] = ..., handler: _Optional[str] = ..., view: _Optional[_Union[StepView, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStepsResponse(_message.Message):
    __slots__ = ["next_page_token", "steps"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    def __init__(self, steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ParentResult(_message.Message):
    __slots__ = ["omitted", "result", "step_id", "step_name"]
    OMITTED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    omitted: bool
    result: _struct_pb2.Struct
    step_id: str
    step_name: str
    def __init__(self, step_name: _Optional[str] = ..., step_id: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., omitted: bool = ...) -> None: ...

class ReleaseStepRequest(_message.Message):
    __slots__ = ["lease_token", "reason", "step_id"]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    lease_token: str
    reason: str
    step_id: str
    def __init__(self, step_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseStepResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ResolveStepRequest(_message.Message):
    __slots__ = ["id", "reason", "result"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    result: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveStepResponse(_message.Message):
    __slots__ = ["step"]
    STEP_FIELD_NUMBER: _ClassVar[int]
    step: Step
    def __init__(self, step: _Optional[_Union[Step, _Mapping]] = ...) -> None: ...

class RetryStepRequest(_message.Message):
    __slots__ = ["id", "reason"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RetryStepResponse(_message.Message):
    __slots__ = ["step"]
    STEP_FIELD_NUMBER: _ClassVar[int]
    step: Step
    def __init__(self, step: _Optional[_Union[Step, _Mapping]] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ["attempts", "available_at", "claimed_by", "config", "correlation_id", "create_time", "depends_on", "execution_deadline", "execution_timeout", "finish_time", "handler", "id", "last_error", "lease_duration", "lease_expires_at", "max_attempts", "name", "namespace", "priority", "result", "retry_policy", "state", "task_id", "update_time"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AT_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    available_at: _timestamp_pb2.Timestamp
    claimed_by: str
    config: _struct_pb2.Struct
    correlation_id: str
    create_time: _timestamp_pb2.Timestamp
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    execution_deadline: _timestamp_pb2.Timestamp
    execution_timeout: _duration_pb2.Duration
    finish_time: _timestamp_pb2.Timestamp
    handler: str
    id: str
    last_error: StepError
    lease_duration: _duration_pb2.Duration
    lease_expires_at: _timestamp_pb2.Timestamp
    max_attempts: int
    name: str
    namespace: str
    priority: int
    result: _struct_pb2.Struct
    retry_policy: _common_pb2.RetryPolicy
    state: _common_pb2.StepState
    task_id: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., task_id: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., handler: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.StepState, str]] = ..., depends_on: _Optional[_Iterable[str]] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[int] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ..., retry_policy: _Optional[_Union[_common_pb2.RetryPolicy, _Mapping]] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., execution_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., available_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., claimed_by: _Optional[str] = ..., lease_expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., execution_deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., last_error: _Optional[_Union[StepError, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class StepCompletion(_message.Message):
    __slots__ = ["lease_token", "result", "step_id"]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    lease_token: str
    result: _struct_pb2.Struct
    step_id: str
    def __init__(self, step_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StepError(_message.Message):
    __slots__ = ["attempt", "message", "type"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    message: str
    type: str
    def __init__(self, message: _Optional[str] = ..., type: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class StepFailure(_message.Message):
    __slots__ = ["error", "lease_token", "non_retryable", "retry_after", "step_id"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    error: StepError
    lease_token: str
    non_retryable: bool
    retry_after: _duration_pb2.Duration
    step_id: str
    def __init__(self, step_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., error: _Optional[_Union[StepError, _Mapping]] = ..., non_retryable: bool = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StepLease(_message.Message):
    __slots__ = ["lease_token", "step_id"]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    lease_token: str
    step_id: str
    def __init__(self, step_id: _Optional[str] = ..., lease_token: _Optional[str] = ...) -> None: ...

class StepView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
