"""A fast JSON codec for the Socket.IO stack (orjson), with the standard library as fallback.

python-socketio and python-engineio call `dumps(obj, separators=...)` and `loads(text)`; orjson
is several times faster but differs at the edges (it refuses NaN and lone surrogates, and reads
integers beyond 64 bits as floats), so those inputs are handed to `json`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson


def dumps(obj: Any, **kwargs: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, **kwargs)


_LONG_NUMBER = re.compile(r"\d{19}")


def loads(text: str | bytes, **kwargs: Any) -> Any:
    # orjson reads integers beyond 64 bits as floats; the standard library keeps them exact.
    if _LONG_NUMBER.search(text if isinstance(text, str) else text.decode("utf-8", "replace")):
        return json.loads(text, **kwargs)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, **kwargs)


JSONDecodeError = json.JSONDecodeError
