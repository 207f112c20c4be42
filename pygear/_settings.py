"""One settings record per Client or Worker.

Setters write here and nowhere else.  Every C handle is made from the
record (``apply_client`` / ``apply_worker`` below, with every return code
checked), so a handle re-created after a failure, or a ``clone()``, gets
exactly the same settings.  A setting that C holds (identifier, log
function, TLS, a worker's namespace and functions) bumps ``version``; a C
handle made from an older version is re-made before its next use.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _lib, _log
from ._args import Server
from .errors import GearmanError, RETURN_CODES, error_for
from .serializers import JSON

DEFAULT_CONNECT_TIMEOUT = 5000
SUCCESS = RETURN_CODES["SUCCESS"]
OPTION_NAMES = ("non_blocking", "unbuffered_result", "free_tasks", "generate_unique")


class Settings:
    """What Client and Worker share."""

    def __init__(self) -> None:
        self.servers: List[Server] = []
        self.timeout = -1                              # ms; -1 forever
        self.connect_timeout = DEFAULT_CONNECT_TIMEOUT  # ms, per server
        self.serializer: Any = JSON
        self.identifier: Optional[bytes] = None
        self.log_fn: Optional[Callable[[str], Any]] = None
        self.log_verbose = 0
        self.ssl: Optional[Tuple[Optional[bytes], Optional[bytes], Optional[bytes]]] = None
        self.metrics: Any = None
        self.version = 0                               # bumped when C must be re-made
        self._log_key: Optional[int] = None

    def changed(self) -> None:
        self.version += 1

    def copy(self) -> "Settings":
        other = copy.copy(self)
        other.servers = list(self.servers)
        other._log_key = None
        other.version = 0
        return other

    def log_key(self) -> Optional[int]:
        """The log target C handles of this record report to, if any."""
        if self.log_fn is None and not _log.libgearman_log.isEnabledFor(10):
            return None
        if self._log_key is None:
            self._log_key = _log.new_target(self.log_fn, self.log_verbose)
        else:
            _log.TARGETS[self._log_key] = (self.log_fn, self.log_verbose)
        return self._log_key

    def forget(self) -> None:
        _log.drop_target(self._log_key)
        self._log_key = None


def _check(rc: int, what: str, error_text: Callable[[], Optional[bytes]]) -> None:
    if rc != SUCCESS:
        raw = error_text()
        detail = raw.decode("utf-8", "replace") if raw else None
        raise error_for(rc, "%s failed" % what, detail=detail)


class ClientSettings(Settings):
    def __init__(self) -> None:
        super().__init__()
        self.options: Dict[str, bool] = {name: False for name in OPTION_NAMES}
        self.callbacks: Dict[int, Callable[[Any], Any]] = {}   # event kind -> fn(task)

    def copy(self) -> "ClientSettings":
        other = super().copy()
        assert isinstance(other, ClientSettings)
        other.options = dict(self.options)
        other.callbacks = dict(self.callbacks)
        return other


class WorkerSettings(Settings):
    def __init__(self) -> None:
        super().__init__()
        self.namespace: Optional[bytes] = None
        # registered name -> (fn or None for grab_job only, timeout seconds)
        self.functions: Dict[str, Tuple[Optional[Callable[[Any], Any]], int]] = {}

    def copy(self) -> "WorkerSettings":
        other = super().copy()
        assert isinstance(other, WorkerSettings)
        other.functions = dict(self.functions)
        return other


def _apply_common(settings: Settings, ptr: Any, kind: str) -> None:
    """What Client and Worker handles share: libgearman names the calls
    alike (gearman_client_* / gearman_worker_*)."""
    if settings.identifier:
        _check(getattr(_lib, "gearman_%s_set_identifier" % kind)(
                   ptr, settings.identifier, len(settings.identifier)),
               "setting the identifier", lambda: getattr(_lib, "gearman_%s_error" % kind)(ptr))
    key = settings.log_key()
    if key is not None:
        getattr(_lib, "gearman_%s_set_log_fn" % kind)(
            ptr, _log.LOG_TRAMPOLINE, key, _log.c_verbosity(settings.log_verbose))
    if settings.ssl is not None:
        getattr(_lib, "gearman_%s_set_ssl" % kind)(ptr, True, *settings.ssl)


def apply_client(settings: Settings, ptr: Any) -> None:
    """Everything the record says, on a fresh C client."""
    _apply_common(settings, ptr, "client")


def apply_worker(settings: WorkerSettings, ptr: Any) -> None:
    """The common settings on a fresh C worker (its functions are
    registered by the Worker, which owns their contexts)."""
    if settings.namespace:
        _lib.gearman_worker_set_namespace(ptr, settings.namespace, len(settings.namespace))
    _apply_common(settings, ptr, "worker")


__all__ = ["Settings", "ClientSettings", "WorkerSettings", "apply_client", "apply_worker",
           "GearmanError"]
