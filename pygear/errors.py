"""pygear's exception hierarchy: one class per ``gearman_return_t`` name.

Kept free of ctypes so that ``import pygear`` and the Admin client work
where libgearman is missing.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Type

# gearman_return_t, in the order of libgearman-1.0/return.h (1.1.20).
RETURN_NAMES = (
    "SUCCESS", "IO_WAIT", "SHUTDOWN", "SHUTDOWN_GRACEFUL", "ERRNO", "EVENT",
    "TOO_MANY_ARGS", "NO_ACTIVE_FDS", "INVALID_MAGIC", "INVALID_COMMAND",
    "INVALID_PACKET", "UNEXPECTED_PACKET", "GETADDRINFO", "NO_SERVERS",
    "LOST_CONNECTION", "MEMORY_ALLOCATION_FAILURE", "JOB_EXISTS",
    "JOB_QUEUE_FULL", "SERVER_ERROR", "WORK_ERROR", "WORK_DATA",
    "WORK_WARNING", "WORK_STATUS", "WORK_EXCEPTION", "WORK_FAIL",
    "NOT_CONNECTED", "COULD_NOT_CONNECT", "SEND_IN_PROGRESS",
    "RECV_IN_PROGRESS", "NOT_FLUSHING", "DATA_TOO_LARGE",
    "INVALID_FUNCTION_NAME", "INVALID_WORKER_FUNCTION",
    "NO_REGISTERED_FUNCTION", "NO_REGISTERED_FUNCTIONS", "NO_JOBS",
    "ECHO_DATA_CORRUPTION", "NEED_WORKLOAD_FN", "PAUSE", "UNKNOWN_STATE",
    "PTHREAD", "PIPE_EOF", "QUEUE_ERROR", "FLUSH_DATA",
    "SEND_BUFFER_TOO_SMALL", "IGNORE_PACKET", "UNKNOWN_OPTION", "TIMEOUT",
    "ARGUMENT_TOO_LARGE", "INVALID_ARGUMENT", "IN_PROGRESS",
    "INVALID_SERVER_OPTION", "JOB_NOT_FOUND",
)
RETURN_CODES: Dict[str, int] = {name: code for code, name in enumerate(RETURN_NAMES)}
MAX_RETURN = len(RETURN_NAMES)
# Codes that mean "not finished yet", as return.h's static inline gearman_continue().
CONTINUE_CODES = frozenset(
    RETURN_CODES[n] for n in ("IO_WAIT", "IN_PROGRESS", "PAUSE", "JOB_EXISTS")
)


def describe_returncode(code: int) -> str:
    """The gearman_return_t name of ``code`` (``"TIMEOUT"`` for 47)."""
    if 0 <= code < MAX_RETURN:
        return RETURN_NAMES[code]
    return "UNKNOWN_RETURN_%d" % code


class GearmanError(Exception):
    """Base of everything pygear raises.

    ``code`` is the gearman_return_t int (or None when no libgearman code
    applies), ``name`` its name.
    """

    code: Optional[int] = None
    name: str = "GEARMAN_ERROR"

    def __init__(self, message: str = "", code: Optional[int] = None,
                 payload: Any = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
            self.name = describe_returncode(code)
        self.payload = payload

    def __reduce__(self):
        return (self.__class__, (str(self), self.code, self.payload))


class ERROR(GearmanError):
    """pygear's generic error: admin ``ERR`` replies, closed objects, and
    failures with no better code.  Not libgearman's GEARMAN_ERROR."""

    name = "ERROR"

    def __init__(self, message: str = "", code: Any = None, payload: Any = None,
                 server_code: Optional[str] = None, text: Optional[str] = None) -> None:
        super().__init__(message, code if isinstance(code, int) else None, payload)
        # An admin ERR reply carries a textual code (e.g. "UNKNOWN_JOB").
        self.server_code = server_code if server_code is not None else (
            code if isinstance(code, str) else None)
        self.text = text


class LibraryNotFound(GearmanError, OSError):
    """libgearman could not be loaded."""

    name = "LIBRARY_NOT_FOUND"

    def __init__(self, message: str = "", code: Optional[int] = None,
                 payload: Any = None) -> None:
        GearmanError.__init__(self, message, code, payload)


class NotSupported(GearmanError):
    """The loaded libgearman lacks the symbol a feature needs."""

    name = "NOT_SUPPORTED"


_EXTRA_BASES: Dict[str, tuple] = {
    "TIMEOUT": (TimeoutError,),
    "COULD_NOT_CONNECT": (ConnectionError,),
    "LOST_CONNECTION": (ConnectionError,),
    "NOT_CONNECTED": (ConnectionError,),
}

ERROR_CLASSES: Dict[int, Type[GearmanError]] = {}


def _make_class(code: int, name: str) -> Type[GearmanError]:
    bases = (GearmanError,) + _EXTRA_BASES.get(name, ())
    namespace = {
        "code": code,
        "name": name,
        "__doc__": "libgearman returned GEARMAN_%s." % name,
        "__module__": __name__,
    }
    if len(bases) > 1:
        # OSError subclasses take their own constructor arguments; keep ours.
        namespace["__init__"] = GearmanError.__init__
    return type(name, bases, namespace)


for _code, _name in enumerate(RETURN_NAMES):
    ERROR_CLASSES[_code] = _make_class(_code, _name)
    globals()[_name] = ERROR_CLASSES[_code]
del _code, _name


def error_for(code: int, message: str, payload: Any = None) -> GearmanError:
    """The exception instance for a gearman_return_t ``code``."""
    cls = ERROR_CLASSES.get(code, GearmanError)
    return cls(message, code, payload)


__all__ = ["GearmanError", "ERROR", "LibraryNotFound", "NotSupported",
           "describe_returncode", "error_for", "RETURN_NAMES", "RETURN_CODES",
           *RETURN_NAMES]
