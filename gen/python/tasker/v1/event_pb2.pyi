from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
START_POSITION_AFTER_SEQUENCE: StartPosition
START_POSITION_BEGINNING: StartPosition
START_POSITION_NOW: StartPosition
START_POSITION_UNSPECIFIED: StartPosition

class Event(_message.Message):
    __slots__ = ["correlation_id", "namespace", "payload", "sequence", "step_id", "task_id", "template_name", "template_version", "time", "type"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    namespace: str
    payload: _struct_pb2.Struct
    sequence: int
    step_id: str
    task_id: str
    template_name: str
    template_version: str
    time: _timestamp_pb2.Timestamp
    type: str
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., namespace: _Optional[str] = ..., template_name: _Optional[str] = ..., template_version: _Optional[str] = ..., task_id: _Optional[str] = ..., step_id: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EventField(_message.Message):
    __slots__ = ["description", "name", "type"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    description: str
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class EventFilter(_message.Message):
    __slots__ = ["correlation_id", "namespace", "task_id", "template_name", "types"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    namespace: str
    task_id: str
    template_name: str
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., template_name: _Optional[str] = ..., task_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ...) -> None: ...

class EventType(_message.Message):
    __slots__ = ["description", "name", "payload_fields"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELDS_FIELD_NUMBER: _ClassVar[int]
    description: str
    name: str
    payload_fields: _containers.RepeatedCompositeFieldContainer[EventField]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., payload_fields: _Optional[_Iterable[_Union[EventField, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ["scanned_sequence", "time"]
    SCANNED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    scanned_sequence: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, scanned_sequence: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListEventTypesRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListEventTypesResponse(_message.Message):
    __slots__ = ["event_types"]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedCompositeFieldContainer[EventType]
    def __init__(self, event_types: _Optional[_Iterable[_Union[EventType, _Mapping]]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ["after_sequence", "filter", "page_size", "page_token", "until_sequence"]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNTIL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    filter: EventFilter
    page_size: int
    page_token: str
    until_sequence: int
    def __init__(self, filter: _Optional[_Union[EventFilter, _Mapping]] = ..., after_sequence: _Optional[int] = ..., until_sequence: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ["events", "head_sequence", "next_page_token", "scanned_sequence"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCANNED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    head_sequence: int
    next_page_token: str
    scanned_sequence: int
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., scanned_sequence: _Optional[int] = ..., head_sequence: _Optional[int] = ...) -> None: ...

class PublishEventRequest(_message.Message):
    __slots__ = ["payload", "step_id", "task_id", "type"]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    payload: _struct_pb2.Struct
    step_id: str
    task_id: str
    type: str
    def __init__(self, type: _Optional[str] = ..., task_id: _Optional[str] = ..., step_id: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PublishEventResponse(_message.Message):
    __slots__ = ["event"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ["after_sequence", "filter", "heartbeat_interval", "start", "until_task_finished"]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    UNTIL_TASK_FINISHED_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    filter: EventFilter
    heartbeat_interval: _duration_pb2.Duration
    start: StartPosition
    until_task_finished: bool
    def __init__(self, filter: _Optional[_Union[EventFilter, _Mapping]] = ..., start: _Optional[_Union[StartPosition, str]] = ..., after_sequence: _Optional[int] = ..., until_task_finished: bool = ..., heartbeat_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ["event", "heartbeat", "started"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    event: Event
    heartbeat: Heartbeat
    started: SubscriptionStarted
    def __init__(self, started: _Optional[_Union[SubscriptionStarted, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class SubscriptionStarted(_message.Message):
    __slots__ = ["head_sequence", "oldest_sequence", "start_after_sequence"]
    HEAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    head_sequence: int
    oldest_sequence: int
    start_after_sequence: int
    def __init__(self, head_sequence: _Optional[int] = ..., start_after_sequence: _Optional[int] = ..., oldest_sequence: _Optional[int] = ...) -> None: ...

class StartPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
