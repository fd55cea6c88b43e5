from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
IDENTITY_STRATEGY_ALWAYS_UNIQUE: IdentityStrategy
IDENTITY_STRATEGY_CALLER_KEY: IdentityStrategy
IDENTITY_STRATEGY_STRICT: IdentityStrategy
IDENTITY_STRATEGY_UNSPECIFIED: IdentityStrategy
STEP_STATE_CANCELLED: StepState
STEP_STATE_COMPLETE: StepState
STEP_STATE_ENQUEUED: StepState
STEP_STATE_ERROR: StepState
STEP_STATE_IN_PROGRESS: StepState
STEP_STATE_PENDING: StepState
STEP_STATE_RESOLVED_MANUALLY: StepState
STEP_STATE_UNSPECIFIED: StepState
STEP_STATE_WAITING_FOR_RETRY: StepState
TASK_STATE_CANCELLED: TaskState
TASK_STATE_COMPLETE: TaskState
TASK_STATE_ERROR: TaskState
TASK_STATE_IN_PROGRESS: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_RESOLVED_MANUALLY: TaskState
TASK_STATE_UNSPECIFIED: TaskState

class EntryResult(_message.Message):
    __slots__ = ["code", "message", "metadata", "reason"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    metadata: _containers.ScalarMap[str, str]
    reason: str
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HandlerRef(_message.Message):
    __slots__ = ["handler", "namespace"]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    handler: str
    namespace: str
    def __init__(self, namespace: _Optional[str] = ..., handler: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ["backoff_multiplier", "initial_backoff", "jitter", "max_attempts", "max_backoff"]
    BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    backoff_multiplier: float
    initial_backoff: _duration_pb2.Duration
    jitter: float
    max_attempts: int
    max_backoff: _duration_pb2.Duration
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., backoff_multiplier: _Optional[float] = ..., max_backoff: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., jitter: _Optional[float] = ...) -> None: ...

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class StepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class IdentityStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
