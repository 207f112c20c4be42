"""pygear: a Gearman client, worker and admin library over libgearman, through ctypes.

``import pygear`` needs no libgearman; creating a Client or Worker loads it.
"""
from .errors import *  # noqa: F401,F403  (one exception class per gearman_return_t)
from .errors import (ERROR, GearmanError, LibraryNotFound, NotSupported,
                     describe_returncode)
from .serializers import JSON, PICKLE, RAW
from .admin import Admin
from .client import Client, Task
from .worker import Job, Worker

__version__ = "0.5.0"


def features() -> dict:
    """What the loaded libgearman can do, read from the library file itself:
    ``{"version", "tls_client", "tls_worker", "tls_reason", "ssl_library", ...}``."""
    from . import _tls
    return _tls.features()


def libgearman_version() -> str:
    """gearman_version() of the loaded libgearman (loading it if needed)."""
    from . import _lib
    _lib.load()
    return _lib.version


__all__ = ["Admin", "Client", "Task", "Worker", "Job", "JSON", "RAW", "PICKLE",
           "GearmanError", "ERROR", "LibraryNotFound", "NotSupported",
           "describe_returncode", "features", "libgearman_version"]
