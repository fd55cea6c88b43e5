"""Every message and enum of tasker.v1 in one namespace.

protoc puts each type in the module of its .proto file (TaskState is in
tasker.v1.common_pb2, StepState values too, StartPosition in event_pb2);
this module gathers them, so `from tasker_client import pb` is the only
import a program needs: pb.CreateTaskRequest, pb.TaskState.TASK_STATE_COMPLETE
(or pb.TASK_STATE_COMPLETE), pb.StepLease, ...
"""

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from tasker.v1 import common_pb2, event_pb2, registry_pb2, step_pb2, task_pb2

_MODULES = (common_pb2, event_pb2, registry_pb2, step_pb2, task_pb2)

for _module in _MODULES:
    for _name, _desc in _module.DESCRIPTOR.message_types_by_name.items():
        globals()[_name] = getattr(_module, _name)
    for _name, _desc in _module.DESCRIPTOR.enum_types_by_name.items():
        _enum = getattr(_module, _name)
        globals()[_name] = _enum
        for _value in _desc.values:
            globals()[_value.name] = _value.number

Struct = struct_pb2.Struct
Duration = duration_pb2.Duration
Timestamp = timestamp_pb2.Timestamp

del _module, _name, _desc
