"""pygear: a Gearman client, worker and admin library over libgearman, through ctypes.

``import pygear`` needs no libgearman; creating a Client or Worker loads it.
"""
from typing import Any, Dict

from .errors import (  # one exception class per gearman_return_t
    SUCCESS, IO_WAIT, SHUTDOWN, SHUTDOWN_GRACEFUL, ERRNO, EVENT, TOO_MANY_ARGS,
    NO_ACTIVE_FDS, INVALID_MAGIC, INVALID_COMMAND, INVALID_PACKET, UNEXPECTED_PACKET,
    GETADDRINFO, NO_SERVERS, LOST_CONNECTION, MEMORY_ALLOCATION_FAILURE, JOB_EXISTS,
    JOB_QUEUE_FULL, SERVER_ERROR, WORK_ERROR, WORK_DATA, WORK_WARNING, WORK_STATUS,
    WORK_EXCEPTION, WORK_FAIL, NOT_CONNECTED, COULD_NOT_CONNECT, SEND_IN_PROGRESS,
    RECV_IN_PROGRESS, NOT_FLUSHING, DATA_TOO_LARGE, INVALID_FUNCTION_NAME,
    INVALID_WORKER_FUNCTION, NO_REGISTERED_FUNCTION, NO_REGISTERED_FUNCTIONS, NO_JOBS,
    ECHO_DATA_CORRUPTION, NEED_WORKLOAD_FN, PAUSE, UNKNOWN_STATE, PTHREAD, PIPE_EOF,
    QUEUE_ERROR, FLUSH_DATA, SEND_BUFFER_TOO_SMALL, IGNORE_PACKET, UNKNOWN_OPTION, TIMEOUT,
    ARGUMENT_TOO_LARGE, INVALID_ARGUMENT, IN_PROGRESS, INVALID_SERVER_OPTION,
    JOB_NOT_FOUND,)
from .errors import (ERROR, GearmanError, LibraryNotFound, NotSupported,
                     describe_returncode)
from .serializers import JSON, PICKLE, RAW
from .admin import Admin
from .client import Client, Task
from .worker import Job, Worker

__version__ = "0.6.0"


def libgearman_version() -> str:
    """gearman_version() of the loaded libgearman (loading it if needed)."""
    from . import _lib
    _lib.load()
    return _lib.version or ""


def features() -> Dict[str, Any]:
    """What the loaded libgearman can do, read from the library file itself:
    ``{"version", "tls_client", "tls_worker", "tls_reason", "ssl_library", ...}``."""
    from . import _tls
    return _tls.features()


__all__ = ["Admin", "Client", "Task", "Worker", "Job", "JSON", "RAW", "PICKLE",
           "GearmanError", "ERROR", "LibraryNotFound", "NotSupported",
           "describe_returncode", "libgearman_version", "features", "SUCCESS", "IO_WAIT",
           "SHUTDOWN", "SHUTDOWN_GRACEFUL", "ERRNO", "EVENT", "TOO_MANY_ARGS",
           "NO_ACTIVE_FDS", "INVALID_MAGIC", "INVALID_COMMAND", "INVALID_PACKET",
           "UNEXPECTED_PACKET", "GETADDRINFO", "NO_SERVERS", "LOST_CONNECTION",
           "MEMORY_ALLOCATION_FAILURE", "JOB_EXISTS", "JOB_QUEUE_FULL", "SERVER_ERROR",
           "WORK_ERROR", "WORK_DATA", "WORK_WARNING", "WORK_STATUS", "WORK_EXCEPTION",
           "WORK_FAIL", "NOT_CONNECTED", "COULD_NOT_CONNECT", "SEND_IN_PROGRESS",
           "RECV_IN_PROGRESS", "NOT_FLUSHING", "DATA_TOO_LARGE", "INVALID_FUNCTION_NAME",
           "INVALID_WORKER_FUNCTION", "NO_REGISTERED_FUNCTION", "NO_REGISTERED_FUNCTIONS",
           "NO_JOBS", "ECHO_DATA_CORRUPTION", "NEED_WORKLOAD_FN", "PAUSE", "UNKNOWN_STATE",
           "PTHREAD", "PIPE_EOF", "QUEUE_ERROR", "FLUSH_DATA", "SEND_BUFFER_TOO_SMALL",
           "IGNORE_PACKET", "UNKNOWN_OPTION", "TIMEOUT", "ARGUMENT_TOO_LARGE",
           "INVALID_ARGUMENT", "IN_PROGRESS", "INVALID_SERVER_OPTION", "JOB_NOT_FOUND"]
