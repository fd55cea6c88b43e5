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
REGISTRATION_OUTCOME_CREATED: RegistrationOutcome
REGISTRATION_OUTCOME_REPLACED: RegistrationOutcome
REGISTRATION_OUTCOME_UNCHANGED: RegistrationOutcome
REGISTRATION_OUTCOME_UNSPECIFIED: RegistrationOutcome

class GetTaskTemplateRequest(_message.Message):
    __slots__ = ["name", "namespace", "version"]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    version: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetTaskTemplateResponse(_message.Message):
    __slots__ = ["template"]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: TaskTemplate
    def __init__(self, template: _Optional[_Union[TaskTemplate, _Mapping]] = ...) -> None: ...

class HandlerInfo(_message.Message):
    __slots__ = ["builtin", "handler", "last_seen_time", "used_by_templates", "workers"]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    USED_BY_TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    builtin: bool
    handler: _common_pb2.HandlerRef
    last_seen_time: _timestamp_pb2.Timestamp
    used_by_templates: bool
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, handler: _Optional[_Union[_common_pb2.HandlerRef, _Mapping]] = ..., used_by_templates: bool = ..., workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ..., last_seen_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., builtin: bool = ...) -> None: ...

class HttpStepConfig(_message.Message):
    __slots__ = ["body", "headers", "max_response_bytes", "method", "result", "success_codes", "timeout", "url"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResultEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_CODES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    body: str
    headers: _containers.ScalarMap[str, str]
    max_response_bytes: int
    method: str
    result: _containers.ScalarMap[str, str]
    success_codes: _containers.RepeatedScalarFieldContainer[int]
    timeout: _duration_pb2.Duration
    url: str
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[str] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., success_codes: _Optional[_Iterable[int]] = ..., result: _Optional[_Mapping[str, str]] = ..., max_response_bytes: _Optional[int] = ...) -> None: ...

class ListHandlersRequest(_message.Message):
    __slots__ = ["active_within", "namespace"]
    ACTIVE_WITHIN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    active_within: _duration_pb2.Duration
    namespace: str
    def __init__(self, namespace: _Optional[str] = ..., active_within: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListHandlersResponse(_message.Message):
    __slots__ = ["handlers"]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    handlers: _containers.RepeatedCompositeFieldContainer[HandlerInfo]
    def __init__(self, handlers: _Optional[_Iterable[_Union[HandlerInfo, _Mapping]]] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ["namespaces", "next_page_token"]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[Namespace]
    next_page_token: str
    def __init__(self, namespaces: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTaskTemplatesRequest(_message.Message):
    __slots__ = ["name", "namespace", "page_size", "page_token"]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTaskTemplatesResponse(_message.Message):
    __slots__ = ["next_page_token", "templates"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    templates: _containers.RepeatedCompositeFieldContainer[TaskTemplate]
    def __init__(self, templates: _Optional[_Iterable[_Union[TaskTemplate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ["create_time", "name", "template_count"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    name: str
    template_count: int
    def __init__(self, name: _Optional[str] = ..., template_count: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterTaskTemplateRequest(_message.Message):
    __slots__ = ["replace", "template"]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    replace: bool
    template: TaskTemplate
    def __init__(self, template: _Optional[_Union[TaskTemplate, _Mapping]] = ..., replace: bool = ...) -> None: ...

class RegisterTaskTemplateResponse(_message.Message):
    __slots__ = ["outcome", "template"]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    outcome: RegistrationOutcome
    template: TaskTemplate
    def __init__(self, template: _Optional[_Union[TaskTemplate, _Mapping]] = ..., outcome: _Optional[_Union[RegistrationOutcome, str]] = ...) -> None: ...

class StepTemplate(_message.Message):
    __slots__ = ["builtin", "config", "depends_on", "description", "execution_timeout", "handler", "http", "lease_duration", "name", "retry_policy"]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    builtin: str
    config: _struct_pb2.Struct
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    description: str
    execution_timeout: _duration_pb2.Duration
    handler: str
    http: HttpStepConfig
    lease_duration: _duration_pb2.Duration
    name: str
    retry_policy: _common_pb2.RetryPolicy
    def __init__(self, name: _Optional[str] = ..., handler: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., retry_policy: _Optional[_Union[_common_pb2.RetryPolicy, _Mapping]] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., execution_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., description: _Optional[str] = ..., builtin: _Optional[str] = ..., http: _Optional[_Union[HttpStepConfig, _Mapping]] = ...) -> None: ...

class TaskTemplate(_message.Message):
    __slots__ = ["content_hash", "context_schema", "create_time", "description", "execution_timeout", "identity_strategy", "lease_duration", "name", "namespace", "retry_policy", "steps", "update_time", "version"]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    content_hash: str
    context_schema: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    description: str
    execution_timeout: _duration_pb2.Duration
    identity_strategy: _common_pb2.IdentityStrategy
    lease_duration: _duration_pb2.Duration
    name: str
    namespace: str
    retry_policy: _common_pb2.RetryPolicy
    steps: _containers.RepeatedCompositeFieldContainer[StepTemplate]
    update_time: _timestamp_pb2.Timestamp
    version: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., identity_strategy: _Optional[_Union[_common_pb2.IdentityStrategy, str]] = ..., context_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., retry_policy: _Optional[_Union[_common_pb2.RetryPolicy, _Mapping]] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., execution_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[StepTemplate, _Mapping]]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., content_hash: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ["last_seen_time", "worker_id"]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    last_seen_time: _timestamp_pb2.Timestamp
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ..., last_seen_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegistrationOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
