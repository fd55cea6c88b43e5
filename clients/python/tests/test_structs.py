"""JSON <-> Struct: integral numbers come back as int, the rest as float;
what a double cannot carry is refused."""

from __future__ import annotations

import math

import pytest

from tasker_client import from_struct, to_struct


@pytest.mark.parametrize("doc", [
    {},
    {"n": 3, "neg": -7, "zero": 0, "x": 1.5, "s": "é", "t": True, "f": False, "none": None},
    {"nested": {"list": [1, 2.25, "a", None, {"deep": [[], {}]}]}, "max": 2**53, "min": -(2**53)},
])
def test_round_trip(doc):
    back = from_struct(to_struct(doc))
    assert back == doc
    assert all(type(back[k]) is type(v) for k, v in doc.items())


def test_integral_float_comes_back_as_int():
    assert from_struct(to_struct({"v": 3.0})) == {"v": 3}
    assert type(from_struct(to_struct({"v": 3.0}))["v"]) is int


@pytest.mark.parametrize("doc, error", [
    ({"v": math.nan}, ValueError),
    ({"v": math.inf}, ValueError),
    ({"v": 2**53 + 1}, ValueError),
    ({"v": b"bytes"}, TypeError),
    ({"v": object()}, TypeError),
    ({1: "key"}, TypeError),
    ({"v": {2: "nested key"}}, TypeError),
])
def test_refused(doc, error):
    with pytest.raises(error):
        to_struct(doc)
