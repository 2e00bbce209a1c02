"""A fast JSON codec for the Socket.IO stack (orjson), with the standard library as fallback.

python-socketio and python-engineio call `dumps(obj, separators=...)` and `loads(text)`; orjson
is several times faster but rejects what the standard library tolerates (integers beyond 64 bits),
so anything it refuses is handed to `json`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any, **kwargs: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, **kwargs)


def loads(text: str | bytes, **kwargs: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, **kwargs)


JSONDecodeError = json.JSONDecodeError
