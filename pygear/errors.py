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
    #: libgearman's own words for the failure (its error text), when it
    #: gave any; the message itself says what went wrong in pygear's.
    detail: Optional[str] = None
    #: Where a job was abandoned (timeout, interrupt): its handle and the
    #: server that issued it, when the server had issued one.
    job_handle: Optional[str] = None
    server: Optional[str] = None

    def __init__(self, message: str = "", code: Optional[int] = None,
                 payload: Any = None, detail: Optional[str] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
            self.name = describe_returncode(code)
        self.payload = payload
        if detail:
            self.detail = detail

    def __reduce__(self):
        return (self.__class__, (str(self), self.code, self.payload, self.detail))


class ERROR(GearmanError):
    """pygear's generic error: admin ``ERR`` replies, closed objects, and
    failures with no better code.  Not libgearman's GEARMAN_ERROR."""

    name = "ERROR"

    def __init__(self, message: str = "", code: Any = None, payload: Any = None,
                 detail: Optional[str] = None, server_code: Optional[str] = None,
                 text: Optional[str] = None) -> None:
        super().__init__(message, code if isinstance(code, int) else None, payload, detail)
        # An admin ERR reply carries a textual code (e.g. "UNKNOWN_JOB").
        self.server_code = server_code if server_code is not None else (
            code if isinstance(code, str) else None)
        self.text = text

    def __reduce__(self):
        return (self.__class__, (str(self), self.code, self.payload, self.detail,
                                 self.server_code, self.text))


class LibraryNotFound(GearmanError, OSError):
    """libgearman could not be loaded."""

    name = "LIBRARY_NOT_FOUND"

    __init__ = GearmanError.__init__   # not OSError's own arguments


class NotSupported(GearmanError):
    """The loaded libgearman lacks the symbol a feature needs."""

    name = "NOT_SUPPORTED"


# One class per gearman_return_t, written out (not made in a loop) so that
# type checkers see ``pygear.TIMEOUT`` and friends.  tests/test_errors.py
# checks this list against RETURN_NAMES and libgearman's gearman_strerror.

class SUCCESS(GearmanError):
    """libgearman returned GEARMAN_SUCCESS."""
    code = 0
    name = "SUCCESS"


class IO_WAIT(GearmanError):
    """libgearman returned GEARMAN_IO_WAIT."""
    code = 1
    name = "IO_WAIT"


class SHUTDOWN(GearmanError):
    """libgearman returned GEARMAN_SHUTDOWN."""
    code = 2
    name = "SHUTDOWN"


class SHUTDOWN_GRACEFUL(GearmanError):
    """libgearman returned GEARMAN_SHUTDOWN_GRACEFUL."""
    code = 3
    name = "SHUTDOWN_GRACEFUL"


class ERRNO(GearmanError):
    """libgearman returned GEARMAN_ERRNO."""
    code = 4
    name = "ERRNO"


class EVENT(GearmanError):
    """libgearman returned GEARMAN_EVENT."""
    code = 5
    name = "EVENT"


class TOO_MANY_ARGS(GearmanError):
    """libgearman returned GEARMAN_TOO_MANY_ARGS."""
    code = 6
    name = "TOO_MANY_ARGS"


class NO_ACTIVE_FDS(GearmanError):
    """libgearman returned GEARMAN_NO_ACTIVE_FDS."""
    code = 7
    name = "NO_ACTIVE_FDS"


class INVALID_MAGIC(GearmanError):
    """libgearman returned GEARMAN_INVALID_MAGIC."""
    code = 8
    name = "INVALID_MAGIC"


class INVALID_COMMAND(GearmanError):
    """libgearman returned GEARMAN_INVALID_COMMAND."""
    code = 9
    name = "INVALID_COMMAND"


class INVALID_PACKET(GearmanError):
    """libgearman returned GEARMAN_INVALID_PACKET."""
    code = 10
    name = "INVALID_PACKET"


class UNEXPECTED_PACKET(GearmanError):
    """libgearman returned GEARMAN_UNEXPECTED_PACKET."""
    code = 11
    name = "UNEXPECTED_PACKET"


class GETADDRINFO(GearmanError):
    """libgearman returned GEARMAN_GETADDRINFO."""
    code = 12
    name = "GETADDRINFO"


class NO_SERVERS(GearmanError):
    """libgearman returned GEARMAN_NO_SERVERS."""
    code = 13
    name = "NO_SERVERS"


class LOST_CONNECTION(GearmanError, ConnectionError):
    """libgearman returned GEARMAN_LOST_CONNECTION."""
    code = 14
    name = "LOST_CONNECTION"
    __init__ = GearmanError.__init__   # not ConnectionError's own arguments


class MEMORY_ALLOCATION_FAILURE(GearmanError):
    """libgearman returned GEARMAN_MEMORY_ALLOCATION_FAILURE."""
    code = 15
    name = "MEMORY_ALLOCATION_FAILURE"


class JOB_EXISTS(GearmanError):
    """libgearman returned GEARMAN_JOB_EXISTS."""
    code = 16
    name = "JOB_EXISTS"


class JOB_QUEUE_FULL(GearmanError):
    """libgearman returned GEARMAN_JOB_QUEUE_FULL."""
    code = 17
    name = "JOB_QUEUE_FULL"


class SERVER_ERROR(GearmanError):
    """libgearman returned GEARMAN_SERVER_ERROR."""
    code = 18
    name = "SERVER_ERROR"


class WORK_ERROR(GearmanError):
    """libgearman returned GEARMAN_WORK_ERROR."""
    code = 19
    name = "WORK_ERROR"


class WORK_DATA(GearmanError):
    """libgearman returned GEARMAN_WORK_DATA."""
    code = 20
    name = "WORK_DATA"


class WORK_WARNING(GearmanError):
    """libgearman returned GEARMAN_WORK_WARNING."""
    code = 21
    name = "WORK_WARNING"


class WORK_STATUS(GearmanError):
    """libgearman returned GEARMAN_WORK_STATUS."""
    code = 22
    name = "WORK_STATUS"


class WORK_EXCEPTION(GearmanError):
    """libgearman returned GEARMAN_WORK_EXCEPTION."""
    code = 23
    name = "WORK_EXCEPTION"


class WORK_FAIL(GearmanError):
    """libgearman returned GEARMAN_WORK_FAIL."""
    code = 24
    name = "WORK_FAIL"


class NOT_CONNECTED(GearmanError, ConnectionError):
    """libgearman returned GEARMAN_NOT_CONNECTED."""
    code = 25
    name = "NOT_CONNECTED"
    __init__ = GearmanError.__init__   # not ConnectionError's own arguments


class COULD_NOT_CONNECT(GearmanError, ConnectionError):
    """libgearman returned GEARMAN_COULD_NOT_CONNECT."""
    code = 26
    name = "COULD_NOT_CONNECT"
    __init__ = GearmanError.__init__   # not ConnectionError's own arguments


class SEND_IN_PROGRESS(GearmanError):
    """libgearman returned GEARMAN_SEND_IN_PROGRESS."""
    code = 27
    name = "SEND_IN_PROGRESS"


class RECV_IN_PROGRESS(GearmanError):
    """libgearman returned GEARMAN_RECV_IN_PROGRESS."""
    code = 28
    name = "RECV_IN_PROGRESS"


class NOT_FLUSHING(GearmanError):
    """libgearman returned GEARMAN_NOT_FLUSHING."""
    code = 29
    name = "NOT_FLUSHING"


class DATA_TOO_LARGE(GearmanError):
    """libgearman returned GEARMAN_DATA_TOO_LARGE."""
    code = 30
    name = "DATA_TOO_LARGE"


class INVALID_FUNCTION_NAME(GearmanError):
    """libgearman returned GEARMAN_INVALID_FUNCTION_NAME."""
    code = 31
    name = "INVALID_FUNCTION_NAME"


class INVALID_WORKER_FUNCTION(GearmanError):
    """libgearman returned GEARMAN_INVALID_WORKER_FUNCTION."""
    code = 32
    name = "INVALID_WORKER_FUNCTION"


class NO_REGISTERED_FUNCTION(GearmanError):
    """libgearman returned GEARMAN_NO_REGISTERED_FUNCTION."""
    code = 33
    name = "NO_REGISTERED_FUNCTION"


class NO_REGISTERED_FUNCTIONS(GearmanError):
    """libgearman returned GEARMAN_NO_REGISTERED_FUNCTIONS."""
    code = 34
    name = "NO_REGISTERED_FUNCTIONS"


class NO_JOBS(GearmanError):
    """libgearman returned GEARMAN_NO_JOBS."""
    code = 35
    name = "NO_JOBS"


class ECHO_DATA_CORRUPTION(GearmanError):
    """libgearman returned GEARMAN_ECHO_DATA_CORRUPTION."""
    code = 36
    name = "ECHO_DATA_CORRUPTION"


class NEED_WORKLOAD_FN(GearmanError):
    """libgearman returned GEARMAN_NEED_WORKLOAD_FN."""
    code = 37
    name = "NEED_WORKLOAD_FN"


class PAUSE(GearmanError):
    """libgearman returned GEARMAN_PAUSE."""
    code = 38
    name = "PAUSE"


class UNKNOWN_STATE(GearmanError):
    """libgearman returned GEARMAN_UNKNOWN_STATE."""
    code = 39
    name = "UNKNOWN_STATE"


class PTHREAD(GearmanError):
    """libgearman returned GEARMAN_PTHREAD."""
    code = 40
    name = "PTHREAD"


class PIPE_EOF(GearmanError):
    """libgearman returned GEARMAN_PIPE_EOF."""
    code = 41
    name = "PIPE_EOF"


class QUEUE_ERROR(GearmanError):
    """libgearman returned GEARMAN_QUEUE_ERROR."""
    code = 42
    name = "QUEUE_ERROR"


class FLUSH_DATA(GearmanError):
    """libgearman returned GEARMAN_FLUSH_DATA."""
    code = 43
    name = "FLUSH_DATA"


class SEND_BUFFER_TOO_SMALL(GearmanError):
    """libgearman returned GEARMAN_SEND_BUFFER_TOO_SMALL."""
    code = 44
    name = "SEND_BUFFER_TOO_SMALL"


class IGNORE_PACKET(GearmanError):
    """libgearman returned GEARMAN_IGNORE_PACKET."""
    code = 45
    name = "IGNORE_PACKET"


class UNKNOWN_OPTION(GearmanError):
    """libgearman returned GEARMAN_UNKNOWN_OPTION."""
    code = 46
    name = "UNKNOWN_OPTION"


class TIMEOUT(GearmanError, TimeoutError):
    """libgearman returned GEARMAN_TIMEOUT."""
    code = 47
    name = "TIMEOUT"
    __init__ = GearmanError.__init__   # not TimeoutError's own arguments


class ARGUMENT_TOO_LARGE(GearmanError):
    """libgearman returned GEARMAN_ARGUMENT_TOO_LARGE."""
    code = 48
    name = "ARGUMENT_TOO_LARGE"


class INVALID_ARGUMENT(GearmanError):
    """libgearman returned GEARMAN_INVALID_ARGUMENT."""
    code = 49
    name = "INVALID_ARGUMENT"


class IN_PROGRESS(GearmanError):
    """libgearman returned GEARMAN_IN_PROGRESS."""
    code = 50
    name = "IN_PROGRESS"


class INVALID_SERVER_OPTION(GearmanError):
    """libgearman returned GEARMAN_INVALID_SERVER_OPTION."""
    code = 51
    name = "INVALID_SERVER_OPTION"


class JOB_NOT_FOUND(GearmanError):
    """libgearman returned GEARMAN_JOB_NOT_FOUND."""
    code = 52
    name = "JOB_NOT_FOUND"


ERROR_CLASSES: Dict[int, Type[GearmanError]] = {
    cls.code: cls for cls in GearmanError.__subclasses__()
    if cls.__module__ == __name__ and isinstance(cls.code, int)}


def error_for(code: int, message: str, payload: Any = None,
              detail: Optional[str] = None) -> GearmanError:
    """The exception instance for a gearman_return_t ``code``."""
    cls = ERROR_CLASSES.get(code, GearmanError)
    return cls(message, code, payload, detail)


__all__ = ["GearmanError", "ERROR", "LibraryNotFound", "NotSupported",
           "describe_returncode", "error_for", "RETURN_NAMES", "RETURN_CODES",
           "SUCCESS", "IO_WAIT", "SHUTDOWN", "SHUTDOWN_GRACEFUL", "ERRNO", "EVENT",
           "TOO_MANY_ARGS", "NO_ACTIVE_FDS", "INVALID_MAGIC", "INVALID_COMMAND",
           "INVALID_PACKET", "UNEXPECTED_PACKET", "GETADDRINFO", "NO_SERVERS",
           "LOST_CONNECTION", "MEMORY_ALLOCATION_FAILURE", "JOB_EXISTS", "JOB_QUEUE_FULL",
           "SERVER_ERROR", "WORK_ERROR", "WORK_DATA", "WORK_WARNING", "WORK_STATUS",
           "WORK_EXCEPTION", "WORK_FAIL", "NOT_CONNECTED", "COULD_NOT_CONNECT",
           "SEND_IN_PROGRESS", "RECV_IN_PROGRESS", "NOT_FLUSHING", "DATA_TOO_LARGE",
           "INVALID_FUNCTION_NAME", "INVALID_WORKER_FUNCTION", "NO_REGISTERED_FUNCTION",
           "NO_REGISTERED_FUNCTIONS", "NO_JOBS", "ECHO_DATA_CORRUPTION",
           "NEED_WORKLOAD_FN", "PAUSE", "UNKNOWN_STATE", "PTHREAD", "PIPE_EOF",
           "QUEUE_ERROR", "FLUSH_DATA", "SEND_BUFFER_TOO_SMALL", "IGNORE_PACKET",
           "UNKNOWN_OPTION", "TIMEOUT", "ARGUMENT_TOO_LARGE", "INVALID_ARGUMENT",
           "IN_PROGRESS", "INVALID_SERVER_OPTION", "JOB_NOT_FOUND"]
