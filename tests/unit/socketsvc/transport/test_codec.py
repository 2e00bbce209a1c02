"""The Socket.IO JSON codec: orjson's speed, the standard library's tolerance."""

from __future__ import annotations

import json

import pytest

from socketsvc.transport import codec as jsoncodec


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, None, True]}, "héllo ✓", 2**70, -(2**70), 2**64 + 1, 10**40],
)
def test_round_trip_matches_the_standard_library(value):
    encoded = jsoncodec.dumps(value, separators=(",", ":"))
    assert json.loads(encoded) == value
    decoded = jsoncodec.loads(encoded)
    assert decoded == value and type(decoded) is type(value)


def test_what_orjson_refuses_falls_back():
    assert jsoncodec.loads("[NaN]")[0] != jsoncodec.loads("[NaN]")[0]  # NaN
    assert jsoncodec.loads('["\\ud800"]') == ["\ud800"]  # lone surrogate
    assert json.loads(jsoncodec.dumps({1: "int key"})) == {"1": "int key"}


def test_invalid_json_still_raises():
    with pytest.raises(ValueError):
        jsoncodec.loads("{nope")
