"""Finding and loading libgearman, and every C prototype pygear calls.

Nothing else in the package touches ``ctypes.CDLL``.  Prototypes use the C
names and follow ``/usr/include/libgearman-1.0/*.h`` (1.1.20).  The library
is loaded lazily: ``import pygear`` works without it, and the first access
to a ``gearman_*`` attribute of this module loads it (raising
``LibraryNotFound`` when it cannot be found).  After loading, every
prototype is a plain module global, so a hot call costs one dict lookup.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_int,
                    c_int64, c_size_t, c_uint16, c_uint32, c_void_p)
from typing import Iterator, List, Optional, Tuple

from .errors import LibraryNotFound, NotSupported

ENV_VAR = "PYGEAR_LIBGEARMAN"
INSTALL_HINT = (
    "install libgearman (Debian/Ubuntu: apt-get install libgearman8; "
    "macOS: brew install gearman) or name the library with "
    "PYGEAR_LIBGEARMAN=/path/libgearman.so"
)
JOB_HANDLE_SIZE = 64          # GEARMAN_JOB_HANDLE_SIZE, limits.h
MAX_UNIQUE_SIZE = 64          # GEARMAN_MAX_UNIQUE_SIZE
FUNCTION_MAX_SIZE = 512       # GEARMAN_FUNCTION_MAX_SIZE
MAX_IDENTIFIER = 254          # GEARMAN_MAX_IDENTIFIER


# --- Opaque handles (constants.h) ---------------------------------------
# Each handle kind is its own c_void_p subclass, so ctypes still refuses one
# kind where another is declared (a worker where a client is expected), but
# converts it in about half the time of a POINTER(Structure) instance
# (0.15 against 0.27 us a call; every hot call takes one).

class client_p(c_void_p):
    """gearman_client_st *"""


class worker_p(c_void_p):
    """gearman_worker_st *"""


class job_p(c_void_p):
    """gearman_job_st *"""


# Tasks travel as plain addresses: task callbacks fire once per event on the
# hot path, and an int costs ctypes far less than a POINTER instance.
task_p = c_void_p


# --- Value types ------------------------------------------------------------

class gearman_string_t(Structure):          # string.h
    _fields_ = [("c_str", c_void_p), ("size", c_size_t)]


class gearman_argument_t(Structure):        # argument.h
    _fields_ = [("name", gearman_string_t), ("value", gearman_string_t)]


class gearman_task_attr_t(Structure):       # task_attr.h
    _fields_ = [("kind", c_int), ("priority", c_int), ("epoch", c_int64)]


class _status_v1(Structure):                # interface/status.h
    _fields_ = [("result_rc", c_int), ("is_known", c_bool), ("is_running", c_bool),
                ("numerator", c_uint32), ("denominator", c_uint32),
                ("client_count", c_uint32)]


class gearman_status_t(Structure):
    _fields_ = [("version_", c_int), ("mesg_", _status_v1)]


# task_attr.h / priority.h enums
TASK_ATTR_FOREGROUND, TASK_ATTR_BACKGROUND, TASK_ATTR_EPOCH = 0, 1, 2
PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = 0, 1, 2

# gearman_client_options_t (constants.h)
CLIENT_NON_BLOCKING = 1 << 1
CLIENT_UNBUFFERED_RESULT = 1 << 3
CLIENT_FREE_TASKS = 1 << 5
CLIENT_GENERATE_UNIQUE = 1 << 6
CLIENT_EXCEPTION = 1 << 7

# gearman_worker_options_t (constants.h)
WORKER_NON_BLOCKING = 1 << 1
WORKER_GRAB_UNIQ = 1 << 7
WORKER_TIMEOUT_RETURN = 1 << 8

# gearman_verbose_t (constants.h)
VERBOSE_NAMES = ("NEVER", "FATAL", "ERROR", "INFO", "DEBUG", "CRAZY")


# --- Callback types (client_callbacks.h, constants.h) ---------------------

task_fn = CFUNCTYPE(c_int, task_p)                          # every gearman_*_fn of a task
log_fn = CFUNCTYPE(None, c_char_p, c_int, c_void_p)         # gearman_log_fn
task_context_free_fn = CFUNCTYPE(None, task_p, c_void_p)    # gearman_task_context_free_fn
# gearman_worker_fn (v1): void *fn(job, context, size_t *result_size, gearman_return_t *ret_ptr)
# Every argument travels as an address, so that ctypes builds no object per
# job: the job's is passed on as is (job_p accepts an address), and
# libgearman presets the two out-parameters, which the trampoline writes
# only on failure.
worker_fn = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)


# --- Prototypes ---------------------------------------------------------------
# (name, restype, argtypes, first libgearman version exporting it or None)

_r = c_int  # gearman_return_t
_PROTOTYPES: List[Tuple[str, object, list, Optional[str]]] = [
    # strerror.h, version (gearman.h)
    ("gearman_version", c_char_p, [], None),
    ("gearman_strerror", c_char_p, [_r], None),

    # client.h: life cycle and settings
    ("gearman_client_create", client_p, [client_p], None),
    ("gearman_client_clone", client_p, [client_p, client_p], None),
    ("gearman_client_free", None, [client_p], None),
    ("gearman_client_error", c_char_p, [client_p], None),
    ("gearman_client_error_code", _r, [client_p], None),
    ("gearman_client_errno", c_int, [client_p], None),
    ("gearman_client_options", c_int, [client_p], None),
    ("gearman_client_add_options", None, [client_p, c_int], None),
    ("gearman_client_remove_options", None, [client_p, c_int], None),
    ("gearman_client_timeout", c_int, [client_p], None),
    ("gearman_client_set_timeout", None, [client_p, c_int], None),
    ("gearman_client_set_log_fn", None, [client_p, log_fn, c_void_p, c_int], None),
    ("gearman_client_add_server", _r, [client_p, c_char_p, c_uint16], None),
    ("gearman_client_remove_servers", None, [client_p], None),
    ("gearman_client_wait", _r, [client_p], None),
    ("gearman_client_set_server_option", c_bool, [client_p, c_char_p, c_size_t], None),
    ("gearman_client_set_identifier", _r, [client_p, c_char_p, c_size_t], None),
    ("gearman_client_set_ssl", None, [client_p, c_bool, c_char_p, c_char_p, c_char_p], "1.1.19"),

    # client.h: jobs and tasks
    ("gearman_client_job_status", _r,
     [client_p, c_char_p, POINTER(c_bool), POINTER(c_bool), POINTER(c_uint32), POINTER(c_uint32)], None),
    ("gearman_client_unique_status", gearman_status_t, [client_p, c_char_p, c_size_t], None),
    ("gearman_client_echo", _r, [client_p, c_char_p, c_size_t], None),
    ("gearman_client_task_free_all", None, [client_p], None),
    ("gearman_client_set_task_context_free_fn", None, [client_p, task_context_free_fn], None),
    ("gearman_client_add_task", task_p,
     [client_p, task_p, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t, POINTER(c_int)], None),
    ("gearman_client_add_task_high", task_p,
     [client_p, task_p, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t, POINTER(c_int)], None),
    ("gearman_client_add_task_low", task_p,
     [client_p, task_p, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t, POINTER(c_int)], None),
    ("gearman_client_add_task_background", task_p,
     [client_p, task_p, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t, POINTER(c_int)], None),
    ("gearman_client_add_task_high_background", task_p,
     [client_p, task_p, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t, POINTER(c_int)], None),
    ("gearman_client_add_task_low_background", task_p,
     [client_p, task_p, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t, POINTER(c_int)], None),
    ("gearman_client_add_task_status", task_p,
     [client_p, task_p, c_void_p, c_char_p, POINTER(c_int)], None),
    ("gearman_client_add_task_status_by_unique", task_p,
     [client_p, task_p, c_char_p, POINTER(c_int)], None),
    ("gearman_client_set_workload_fn", None, [client_p, task_fn], None),
    ("gearman_client_set_created_fn", None, [client_p, task_fn], None),
    ("gearman_client_set_data_fn", None, [client_p, task_fn], None),
    ("gearman_client_set_warning_fn", None, [client_p, task_fn], None),
    ("gearman_client_set_status_fn", None, [client_p, task_fn], None),
    ("gearman_client_set_complete_fn", None, [client_p, task_fn], None),
    ("gearman_client_set_exception_fn", None, [client_p, task_fn], None),
    ("gearman_client_set_fail_fn", None, [client_p, task_fn], None),
    ("gearman_client_clear_fn", None, [client_p], None),
    ("gearman_client_run_tasks", _r, [client_p], None),

    # execute.h: a task with libgearman's own result-keeping actions
    ("gearman_execute", task_p,
     [client_p, c_char_p, c_size_t, c_char_p, c_size_t,
      POINTER(gearman_task_attr_t), POINTER(gearman_argument_t), c_void_p], None),

    # status.h
    ("gearman_status_is_known", c_bool, [gearman_status_t], None),
    ("gearman_status_is_running", c_bool, [gearman_status_t], None),
    ("gearman_status_numerator", c_uint32, [gearman_status_t], None),
    ("gearman_status_denominator", c_uint32, [gearman_status_t], None),
    ("gearman_status_return", _r, [gearman_status_t], None),

    # task.h
    ("gearman_task_free", None, [task_p], None),
    ("gearman_task_context", c_void_p, [task_p], None),
    ("gearman_task_set_context", None, [task_p, c_void_p], None),
    ("gearman_task_function_name", c_char_p, [task_p], None),
    ("gearman_task_unique", c_char_p, [task_p], None),
    ("gearman_task_job_handle", c_char_p, [task_p], None),
    ("gearman_task_is_known", c_bool, [task_p], None),
    ("gearman_task_is_running", c_bool, [task_p], None),
    ("gearman_task_numerator", c_uint32, [task_p], None),
    ("gearman_task_denominator", c_uint32, [task_p], None),
    ("gearman_task_data", c_void_p, [task_p], None),
    ("gearman_task_data_size", c_size_t, [task_p], None),
    ("gearman_task_error", c_char_p, [task_p], None),
    ("gearman_task_result", c_void_p, [task_p], None),
    ("gearman_task_return", _r, [task_p], None),
    ("gearman_task_strstate", c_char_p, [task_p], None),
    ("gearman_task_exception", gearman_string_t, [task_p], None),
    # gearman_task_is_finished is not declared: in 1.1.20 it always returns
    # false (its body lacks a return); see client.task_finished().

    # result.h (gearman_result_st is owned by its task)
    ("gearman_result_size", c_size_t, [c_void_p], None),
    ("gearman_result_value", c_void_p, [c_void_p], None),

    # worker.h
    ("gearman_worker_create", worker_p, [worker_p], None),
    ("gearman_worker_clone", worker_p, [worker_p, worker_p], None),
    ("gearman_worker_free", None, [worker_p], None),
    ("gearman_worker_error", c_char_p, [worker_p], None),
    ("gearman_worker_errno", c_int, [worker_p], None),
    ("gearman_worker_options", c_int, [worker_p], None),
    ("gearman_worker_add_options", None, [worker_p, c_int], None),
    ("gearman_worker_remove_options", None, [worker_p, c_int], None),
    ("gearman_worker_timeout", c_int, [worker_p], None),
    ("gearman_worker_set_timeout", None, [worker_p, c_int], None),
    ("gearman_worker_set_log_fn", None, [worker_p, log_fn, c_void_p, c_int], None),
    ("gearman_worker_add_server", _r, [worker_p, c_char_p, c_uint16], None),
    ("gearman_worker_remove_servers", None, [worker_p], None),
    ("gearman_worker_wait", _r, [worker_p], None),
    ("gearman_worker_register", _r, [worker_p, c_char_p, c_uint32], None),
    ("gearman_worker_unregister", _r, [worker_p, c_char_p], None),
    ("gearman_worker_unregister_all", _r, [worker_p], None),
    ("gearman_worker_grab_job", job_p, [worker_p, job_p, POINTER(c_int)], None),
    ("gearman_worker_add_function", _r, [worker_p, c_char_p, c_uint32, worker_fn, c_void_p], None),
    ("gearman_worker_work", _r, [worker_p], None),
    ("gearman_worker_function_exist", c_bool, [worker_p, c_char_p, c_size_t], None),
    ("gearman_worker_echo", _r, [worker_p, c_char_p, c_size_t], None),
    ("gearman_worker_set_namespace", None, [worker_p, c_char_p, c_size_t], None),
    ("gearman_worker_namespace", c_char_p, [worker_p], None),
    ("gearman_worker_set_identifier", _r, [worker_p, c_char_p, c_size_t], None),
    # Declared in worker.h, but the 1.1.20 .so does not export it.
    ("gearman_worker_set_ssl", None, [worker_p, c_bool, c_char_p, c_char_p, c_char_p], "1.1.21"),

    # job.h
    ("gearman_job_free", None, [job_p], None),
    ("gearman_job_send_data", _r, [job_p, c_char_p, c_size_t], None),
    ("gearman_job_send_warning", _r, [job_p, c_char_p, c_size_t], None),
    ("gearman_job_send_status", _r, [job_p, c_uint32, c_uint32], None),
    ("gearman_job_send_complete", _r, [job_p, c_char_p, c_size_t], None),
    ("gearman_job_send_exception", _r, [job_p, c_char_p, c_size_t], None),
    ("gearman_job_send_fail", _r, [job_p], None),
    ("gearman_job_handle", c_char_p, [job_p], None),
    ("gearman_job_function_name", c_char_p, [job_p], None),
    ("gearman_job_unique", c_char_p, [job_p], None),
    ("gearman_job_workload", c_void_p, [job_p], None),
    ("gearman_job_workload_size", c_size_t, [job_p], None),
    ("gearman_job_error", c_char_p, [job_p], None),
]
SYMBOLS = frozenset(p[0] for p in _PROTOTYPES)


# --- Finding the library ----------------------------------------------------

def _candidates() -> Iterator[str]:
    found = ctypes.util.find_library("gearman")
    if found:
        yield found
    if sys.platform == "darwin":
        yield "libgearman.8.dylib"
        yield "libgearman.dylib"
        for prefix in ("/opt/homebrew/lib", "/usr/local/lib"):
            yield os.path.join(prefix, "libgearman.dylib")
    else:
        yield "libgearman.so.8"
        yield "libgearman.so"
        for prefix in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                       "/usr/lib64", "/usr/lib", "/usr/local/lib"):
            yield os.path.join(prefix, "libgearman.so.8")


def _open() -> Tuple[ctypes.CDLL, str]:
    forced = os.environ.get(ENV_VAR)
    names = [forced] if forced else list(dict.fromkeys(_candidates()))
    failures = []
    for name in names:
        try:
            return ctypes.CDLL(name), name
        except OSError as exc:
            failures.append("%s (%s)" % (name, exc))
    if forced:
        raise LibraryNotFound("cannot load libgearman from %s=%s: %s; %s"
                              % (ENV_VAR, forced, "; ".join(failures), INSTALL_HINT))
    raise LibraryNotFound("libgearman not found; tried: %s. To fix, %s"
                          % (", ".join(failures) or "nothing", INSTALL_HINT))


def _missing(name: str, since: Optional[str], loaded: str):
    def stub(*args, **kwargs):
        raise NotSupported("%s requires libgearman >= %s; %s is loaded"
                           % (name, since, loaded))
    stub.__name__ = name
    return stub


_load_lock = threading.Lock()
dll: Optional[ctypes.CDLL] = None
dll_file: Optional[str] = None
version: Optional[str] = None
libc_free = None


def load() -> ctypes.CDLL:
    """Load libgearman once and bind every prototype as a module global."""
    global dll, dll_file, version, libc_free
    if dll is not None:
        return dll
    with _load_lock:
        if dll is not None:
            return dll
        lib, name = _open()
        try:
            lib_version = ctypes.CFUNCTYPE(c_char_p)(("gearman_version", lib))().decode()
        except AttributeError:
            raise LibraryNotFound("%s is not libgearman (no gearman_version); %s"
                                  % (name, INSTALL_HINT))
        bound = {}
        for cname, restype, argtypes, since in _PROTOTYPES:
            try:
                fn = getattr(lib, cname)
            except AttributeError:
                if since is None:
                    raise LibraryNotFound("%s (libgearman %s) lacks %s, which every "
                                          "libgearman 1.1 exports" % (name, lib_version, cname))
                bound[cname] = _missing(cname, since, lib_version)
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            bound[cname] = fn
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.free.argtypes = [c_void_p]
        libc.free.restype = None
        globals().update(bound)
        libc_free = libc.free
        version, dll_file, dll = lib_version, name, lib
        return lib


def __getattr__(name: str):
    # PEP 562: the first use of a prototype loads the library.
    if name in SYMBOLS:
        load()
        return globals()[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def strerror(code: int) -> str:
    load()
    text = globals()["gearman_strerror"](code)   # bound by load()
    return text.decode("utf-8", "replace") if text else "code %d" % code
