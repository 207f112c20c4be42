"""``pygear.aio.Admin``: every Admin command, awaitable, with the same
results (the commands that answer OK return True, as the blocking ones do).

The admin protocol is a short request and reply over a plain socket; each
command runs the blocking ``pygear.Admin`` in the loop's executor, one at
a time per Admin (a lock held by the thread, so that a cancelled call's
request still completes before the next one starts)."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, List, Optional, Union

from ..admin import Admin as _BlockingAdmin


class Admin:
    """``aio.Admin(host, port, timeout)`` or ``aio.Admin("host:port")``."""

    def __init__(self, host: Union[str, Any] = "localhost", port: Optional[int] = None,
                 timeout: float = 60.0) -> None:
        if port is None:
            self._admin = _BlockingAdmin(host, timeout=timeout)
        else:
            self._admin = _BlockingAdmin(host, port, timeout=timeout)
        self._lock = threading.Lock()

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            with self._lock:
                return method(*args)
        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def __aenter__(self) -> "Admin":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def status(self) -> List[Dict[str, Any]]:
        """[{"function", "total", "running", "available_workers"}]."""
        return await self._call(self._admin.status)  # type: ignore[no-any-return]

    async def workers(self) -> List[Dict[str, Any]]:
        """[{"fd", "ip_address", "client_id", "functions"}]."""
        return await self._call(self._admin.workers)  # type: ignore[no-any-return]

    async def version(self) -> str:
        """gearmand's version."""
        return await self._call(self._admin.version)  # type: ignore[no-any-return]

    async def getpid(self) -> int:
        """gearmand's process id."""
        return await self._call(self._admin.getpid)  # type: ignore[no-any-return]

    async def verbose(self) -> str:
        """gearmand's log level."""
        return await self._call(self._admin.verbose)  # type: ignore[no-any-return]

    async def maxqueue(self, function_name: str, max_queue_size: int) -> bool:
        """Cap a function's queue (gearmand ignores functions it does not know yet)."""
        return await self._call(  # type: ignore[no-any-return]
            self._admin.maxqueue, function_name, max_queue_size)

    async def shutdown(self, graceful: bool = False) -> bool:
        """Ask gearmand to stop (Debian's 1.1.20 refuses: pygear.ERROR)."""
        return await self._call(self._admin.shutdown, graceful)  # type: ignore[no-any-return]

    async def cancel_job(self, job_handle: str) -> bool:
        """Mark a queued job ignored: it is never run."""
        return await self._call(  # type: ignore[no-any-return]
            self._admin.cancel_job, job_handle)

    async def create_function(self, name: str) -> bool:
        """Make the function known to gearmand."""
        return await self._call(self._admin.create_function, name)  # type: ignore[no-any-return]

    async def drop_function(self, name: str) -> bool:
        """Forget the function."""
        return await self._call(self._admin.drop_function, name)  # type: ignore[no-any-return]

    async def show_jobs(self) -> List[Dict[str, Any]]:
        """[{"handle", "retries", "ignore_job", "job_queued"}]."""
        return await self._call(self._admin.show_jobs)  # type: ignore[no-any-return]

    async def show_unique_jobs(self) -> List[str]:
        """The unique keys of queued jobs."""
        return await self._call(self._admin.show_unique_jobs)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Close the connection (the next command reconnects)."""
        await self._call(self._admin.close)
