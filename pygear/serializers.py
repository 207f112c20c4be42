"""Payload serializers: JSON (default), RAW and PICKLE (opt-in)."""
from __future__ import annotations

import json
import pickle
from typing import Any, Union

from ._args import exact_bytes


class _Json:
    """JSON text, UTF-8 encoded on the wire."""

    @staticmethod
    def dumps(obj: Any) -> str:
        return json.dumps(obj)

    @staticmethod
    def loads(data: bytes) -> Any:
        # An empty payload (from a worker that answered nothing) reads as None.
        return json.loads(data) if data else None

    def __repr__(self) -> str:
        return "pygear.JSON"


class _Raw:
    """Bytes pass through unchanged; str is UTF-8 encoded; loads gives bytes."""

    @staticmethod
    def dumps(obj: Union[bytes, bytearray, memoryview, str]) -> bytes:
        if type(obj) is bytes:
            return obj
        if isinstance(obj, (str, bytes, bytearray, memoryview)):
            return exact_bytes(obj, "a RAW payload")
        raise TypeError("RAW serializer takes bytes or str, not %s" % type(obj).__name__)

    @staticmethod
    def loads(data: bytes) -> bytes:
        return bytes(data)

    def __repr__(self) -> str:
        return "pygear.RAW"


class _Pickle:
    """pickle; never the default, since loads() runs code chosen by the sender."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> Any:
        return pickle.loads(data)

    def __repr__(self) -> str:
        return "pygear.PICKLE"


JSON = _Json()
RAW = _Raw()
PICKLE = _Pickle()


def check_serializer(s: Any) -> Any:
    """``s`` itself when it has callable ``loads`` and ``dumps``."""
    for attr in ("loads", "dumps"):
        if not hasattr(s, attr):
            raise AttributeError("serializer %r has no %s()" % (s, attr))
        if not callable(getattr(s, attr)):
            raise TypeError("serializer %r: %s is not callable" % (s, attr))
    return s


def encode(serializer: Any, obj: Any, what: str) -> bytes:
    """Serialize ``obj`` to bytes; a failure raises before anything is sent."""
    if serializer is RAW and type(obj) is bytes:
        return obj
    try:
        data = serializer.dumps(obj)
    except Exception as exc:
        raise TypeError("cannot serialize %s with %r: %s" % (what, serializer, exc)) from exc
    if type(data) is bytes:
        return data
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        # a subclass's encode(), __bytes__ or __len__ never decides what C gets
        return exact_bytes(data, what)
    raise TypeError("%r.dumps returned %s; it must return str or bytes"
                    % (serializer, type(data).__name__))


def decode(serializer: Any, data: bytes) -> Any:
    if serializer is RAW:
        return data
    return serializer.loads(data)
