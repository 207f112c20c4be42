"""The exception report: how a job function's exception reaches the client.

gearmand 1.1.20 mangles WORK_EXCEPTION for clients that did not ask for
exceptions (_workarounds.WORK_EXCEPTION_MANGLED), so a pygear worker ends
the job of a function that raised with WORK_WARNING carrying the report,
then WORK_FAIL.  Every client learns the job ended; pygear's client
recognises the warning (``looks_like_report``) and turns the pair back into
WORK_EXCEPTION with the report as its payload.  The report is
``{"type", "message", "args", "traceback"}``, in the worker's serializer, or
as JSON text where that serializer cannot encode a dict (RAW).
"""
from __future__ import annotations

import json
import os
import traceback
from types import TracebackType
from typing import Any, Dict, List, Optional

from .serializers import JSON, RAW, decode, encode


def build(exc: BaseException) -> Dict[str, Any]:
    """What a client learns about an exception raised in a job function."""
    args: List[Any] = []
    for arg in exc.args:
        try:
            json.dumps(arg)
            args.append(arg)
        except (TypeError, ValueError):
            args.append(repr(arg))
    return {"type": type(exc).__name__, "message": str(exc), "args": args,
            "traceback": traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__))}


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_frames(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """The traceback from the first frame outside pygear: the frames that
    call the job function are pygear's, and say nothing about the job."""
    while tb is not None and tb.tb_next is not None and \
            os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE):
        tb = tb.tb_next
    return tb


def encode_report(serializer: Any, report: Dict[str, Any]) -> bytes:
    if serializer is not RAW:
        try:
            return encode(serializer, report, "exception report")
        except TypeError:
            pass
    return json.dumps(report).encode("utf-8")


def looks_like_report(data: bytes) -> bool:
    """A pygear worker's report, sent as WORK_WARNING before WORK_FAIL."""
    return data[:1] == b"{" and b'"traceback"' in data and b'"type"' in data


def decode_report(serializer: Any, raw: bytes) -> Any:
    """A report: its serializer's form, else JSON text, else the bytes."""
    if not raw:
        return None
    for s in (serializer, JSON):
        try:
            return decode(s, raw)
        except Exception:
            continue
    return raw


def as_report(payload: Any) -> Optional[Dict[str, Any]]:
    """pygear's report from a WORK_EXCEPTION payload: the dict itself, or
    the JSON text a RAW client is sent; None for anything else (another
    worker's own bytes)."""
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = json.loads(bytes(payload).decode("utf-8"))
        except ValueError:
            return None
    if isinstance(payload, dict) and "type" in payload:
        return payload
    return None


def describe(payload: Any) -> str:
    """A report (pygear's dict, or another worker's bytes/str) as text."""
    report = as_report(payload)
    if report is not None:
        trace = report.get("traceback") or []
        if trace:
            return "".join(trace).rstrip("\n")
        return "%s: %s" % (report.get("type"), report.get("message", ""))
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload).decode("utf-8", "replace")
    if payload is None:
        return "(no details)"
    return str(payload)
