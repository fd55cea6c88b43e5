"""JSON documents <-> google.protobuf.Struct.

Contexts, configs, results and event payloads travel as Struct, where every
number is a double. to_struct refuses what a double cannot carry exactly
(NaN, infinities, integers beyond +-2**53); from_struct returns integral
numbers as int and the others as float, so {"n": 3} comes back as {"n": 3},
not {"n": 3.0}. A float that happens to be integral (3.0) also comes back as
int: the wire cannot tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2

MAX_SAFE_INTEGER = 2**53


def to_struct(doc: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """Converts a JSON object (a mapping with string keys) to a Struct."""
    s = struct_pb2.Struct()
    if doc is None:
        return s
    if not isinstance(doc, Mapping):
        raise TypeError(f"a Struct is made from a mapping, got {type(doc).__name__}")
    for key, value in doc.items():
        if not isinstance(key, str):
            raise TypeError(f"Struct keys are strings, got {key!r}")
        s.fields[key].CopyFrom(to_value(value, key))
    return s


def to_value(value: Any, path: str = "value") -> struct_pb2.Value:
    """Converts one JSON value to a google.protobuf.Value."""
    v = struct_pb2.Value()
    if value is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"{path}: {value} does not fit a double exactly (numbers travel as doubles; send it as a string)")
        v.number_value = float(value)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{path}: {value} is not a JSON number")
        v.number_value = value
    elif isinstance(value, str):
        v.string_value = value
    elif isinstance(value, Mapping):
        v.struct_value.SetInParent()  # an empty object is still an object
        v.struct_value.CopyFrom(to_struct_at(value, path))
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        lst = v.list_value
        lst.SetInParent()  # an empty list is still a list
        for i, item in enumerate(value):
            lst.values.add().CopyFrom(to_value(item, f"{path}[{i}]"))
    else:
        raise TypeError(f"{path}: {type(value).__name__} is not a JSON value")
    return v


def to_struct_at(doc: Mapping[str, Any], path: str) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    for key, value in doc.items():
        if not isinstance(key, str):
            raise TypeError(f"{path}: Struct keys are strings, got {key!r}")
        s.fields[key].CopyFrom(to_value(value, f"{path}.{key}"))
    return s


def from_struct(s: struct_pb2.Struct | None) -> dict[str, Any]:
    """Converts a Struct to a dict; integral numbers become int."""
    if s is None:
        return {}
    return {k: from_value(v) for k, v in s.fields.items()}


def from_value(v: struct_pb2.Value) -> Any:
    """Converts a google.protobuf.Value to a JSON value; integral numbers become int."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = v.number_value
        if n.is_integer() and abs(n) <= MAX_SAFE_INTEGER:
            return int(n)
        return n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return from_struct(v.struct_value)
    if kind == "list_value":
        return [from_value(item) for item in v.list_value.values]
    return None
