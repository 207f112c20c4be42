"""The TaskBook: the one owner of a Client's batch tasks.

A task added with ``add_task*`` is in exactly one of two places:

- ``waiting``: not in C yet (just added, beyond a server's window, or sent
  back after its server failed), in submission order;
- ``live``: in the ``batch`` C client of the server it was placed on,
  registered in ``_events.LIVE`` under its C address.

Tasks enter C only inside ``run_tasks``, so ``do*`` (on the servers' other C
clients) never runs or re-sends them.  A task whose last event came is
*ended*: its Task already holds everything it saw, and its C side is freed
at the next safe point (``_settle``), outside libgearman.  A server that
fails mid-batch is marked down; its unfinished tasks go back to the front
of ``waiting`` and are placed on the next server, and the ones that had
ended are never sent again.

Each C client holds at most ``WINDOW`` tasks (_workarounds.TASK_LIST_WALK).
"""
from __future__ import annotations

import logging
import select
import time
from collections import deque
from ctypes import byref, c_int
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Tuple

from . import _lib, _signals
from ._events import LIVE
from ._link import SERVER_FAILURES, CClient, Link, server_failure
from ._task import Task, job_key, may_ask, record_outcome
from ._wait import WAITING, Deadline, drive
from .errors import RETURN_CODES, GearmanError, error_for

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("pygear")
SUCCESS = RETURN_CODES["SUCCESS"]
IO_WAIT = RETURN_CODES["IO_WAIT"]
PAUSE = RETURN_CODES["PAUSE"]
TIMEOUT = RETURN_CODES["TIMEOUT"]
NOT_DONE = frozenset((RETURN_CODES["UNKNOWN_STATE"], RETURN_CODES["COULD_NOT_CONNECT"]))
WINDOW = 1000

_PROGRESS = object()    # a step ended some tasks while others wait for room
_DONE = object()        # every live task ended


def c_task_done(addr: int) -> bool:
    """libgearman is done with the task (_workarounds.TASK_IS_FINISHED)."""
    return _lib.gearman_task_return(addr) not in NOT_DONE


class TaskBook:
    def __init__(self, client: "Client") -> None:
        self._settings = client._settings
        self._issuers = client._issuers
        # (server,) + job_key of each keyed foreground job in C (_task.job_key)
        self._keyed: set = set()
        self.waiting: Deque[Task] = deque()
        self.live: Dict[int, Task] = {}
        self._ended: List[Task] = []
        self._pending: Optional[BaseException] = None     # raised in a callback
        self._failures: List[Tuple[Link, GearmanError]] = []
        self._rc = c_int(SUCCESS)

    def __len__(self) -> int:
        return len(self.waiting) + len(self.live)

    # --- what the tasks tell it (with libgearman on the stack) ---------------
    def callback(self, kind: int, task: Task) -> bool:
        """Run the user's callback for ``kind``; False when it raised."""
        fn = self._settings.callbacks.get(kind)
        if fn is None:
            return True
        try:
            _signals.run_unblocked(fn, task)
        except BaseException as exc:
            self.raised_in_callback(exc)
            return False
        return True

    def raised_in_callback(self, exc: BaseException) -> None:
        if self._pending is None:
            self._pending = exc

    def ended(self, task: Task) -> None:
        self._ended.append(task)

    def record(self, task: Task) -> None:
        """The task's outcome and latency, for the client's metrics."""
        record_outcome(self._settings.metrics, task, time.monotonic())

    # --- adding ----------------------------------------------------------------
    def add(self, task: Task) -> Task:
        metrics = self._settings.metrics
        if metrics is not None and task._status_of is None:
            metrics.submitted(task._function)
            task._started = time.monotonic()
        self.waiting.append(task)
        return task

    # --- running -----------------------------------------------------------------
    def run(self, client: "Client", deadline: Deadline, one_pass: bool) -> None:
        """``run_tasks``: until every task ended (``one_pass``: send what can
        be sent, handle what has arrived, and return)."""
        try:
            while self.waiting or self.live:
                self._place(client, deadline)
                if not self.live:
                    break
                if one_pass:
                    self._step(client, 0)
                    self._after_step(client)
                    return
                drive(client._gate, deadline, lambda ms: self._step(client, ms),
                      lambda: client._timeout_error("running tasks"))
                self._after_step(client)
        finally:
            self._settle()

    def _after_step(self, client: "Client") -> None:
        self._settle()
        pending, self._pending = self._pending, None
        failures, self._failures = self._failures, []
        for link, failure in failures:
            self.requeue(link)
            link.failed_with(failure)
            if failure.code not in SERVER_FAILURES:
                raise client._record(failure)
        if pending is not None:
            raise pending

    def _place(self, client: "Client", deadline: Deadline) -> None:
        """Move waiting tasks into C, each on its server, up to a window each."""
        links = client._links
        if not links:
            raise client._record(error_for(RETURN_CODES["NO_SERVERS"], "running tasks "
                                           "failed: no job server was given"))
        last: Optional[BaseException] = None
        refused: set = set()
        while self.waiting:
            task = self.waiting[0]
            link = self._choose(client, links, task, refused)
            if link is None:
                break
            try:
                cc = link.batch_client(client, deadline, len(links) - len(refused))
            except BaseException as exc:
                if not server_failure(exc):
                    raise
                refused.add(link)
                last = exc
                continue
            self.waiting.popleft()
            try:
                self._submit(client, cc, task)
            except BaseException:
                self.waiting.appendleft(task)
                raise
        if self.waiting and not self.live and last is not None:
            raise client._record(last)

    def _choose(self, client: "Client", links: List[Link], task: Task,
                refused: set) -> Optional[Link]:
        """The server for ``task``, or None when it must wait (its server's
        window is full).  Servers that are down are used only when none is up."""
        if task._status_of is not None:
            issuer = client._issuers.issuer(task._handle or "")
            order = [issuer] if issuer is not None else client._placement.order(links, None)
        else:
            order = client._placement.order(links, task._key)
        candidates = [link for link in order if link not in refused]
        up = [link for link in candidates if link.health.up]
        candidates = up or candidates
        if task._key is not None or task._status_of is not None:
            candidates = candidates[:1]       # its own server, or wait for room there
            if task._status_of is not None and candidates and not may_ask(
                    (t for t in self.live.values() if t._link is candidates[0]),
                    task._status_of):
                return None
            key = job_key(task)
            if key is not None and candidates and (candidates[0],) + key in self._keyed:
                return None                   # after the first one ended
        for link in candidates:
            if link.live < WINDOW:
                return link
        return None

    def _submit(self, client: "Client", cc: CClient, task: Task) -> None:
        if task._status_of is not None:
            addr = _lib.gearman_client_add_task_status(cc.ptr, None, None, task._status_of,
                                                       byref(self._rc))
        else:
            data = task._workload
            addr = getattr(_lib, task._c_name)(cc.ptr, None, None, task._fn, task._uq,
                                                data or None, len(data), byref(self._rc))
        if not addr:
            raise client._record(cc.error(self._rc.value, "adding a task for %r"
                                          % task._function))
        task._addr, task._link = addr, cc.link
        task._server = cc.link.name
        key = job_key(task)
        if key is not None:
            self._keyed.add((cc.link,) + key)
        task._state = "submitted"
        self.live[addr] = task
        LIVE[addr] = task
        cc.link.live += 1

    def _step(self, client: "Client", ms: int) -> Any:
        """A step of the wait loop over every server with live tasks."""
        links = [link for link in client._links if link.live]
        ready: Optional[set] = None       # C clients our own poll found readable
        end = time.monotonic() + ms / 1000.0
        while True:
            busy = []
            for link in links:
                cc = link.batch
                if cc is None or not cc.ptr:
                    continue
                if ready is not None and cc in ready:
                    # libgearman reads only what its own poll marked ready (a
                    # C timeout of 0 would skip its poll: gearman_wait)
                    cc.set_timeout(1)
                    _lib.gearman_client_wait(cc.ptr)
                rc = _lib.gearman_client_run_tasks(cc.ptr)
                if rc == IO_WAIT:
                    busy.append(cc)
                elif rc == PAUSE or self._pending is not None:
                    return _PROGRESS
                elif rc != SUCCESS:
                    self._failures.append((link, cc.error(rc, "running tasks on %s"
                                                          % link.name)))
            if self._failures or self._pending is not None:
                return _PROGRESS
            if not busy:
                return _DONE
            if self._ended and self.waiting:
                return _PROGRESS            # room for waiting tasks: place them first
            left = int((end - time.monotonic()) * 1000)
            if left <= 0:
                return WAITING
            ready = self._wait_any(busy, ms if len(busy) == 1 else left)
            if ready is None:
                return WAITING

    def _wait_any(self, busy: List[CClient], ms: int) -> Optional[set]:
        """Wait for I/O on any of the C clients, ``ms`` at most: libgearman's
        own wait for one, one poll() over their sockets for several.
        Returns the C clients found ready (an empty set: libgearman's own
        wait already marked them), None after a quiet slice."""
        fds = {cc.watch.fd: cc for cc in busy
               if cc.watch is not None and cc.watch.fd is not None}
        if len(busy) == 1 or len(fds) < len(busy):
            # One C client, or a socket not found (pygear/_sockets.py): the
            # others are run again after a share of the slice.
            cc = busy[0]
            cc.set_timeout(ms if len(busy) == 1 else max(1, ms // len(busy)))
            rc = _lib.gearman_client_wait(cc.ptr)
            if rc == SUCCESS:
                return set()
            if rc != TIMEOUT:
                self._failures.append((cc.link, cc.error(rc, "waiting on %s" % cc.link.name)))
                return set()
            return set(busy[1:]) if len(busy) > 1 else None
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        events = poller.poll(ms)
        if not events:
            return None
        return {fds[fd] for fd, _ in events}

    def wait(self, client: "Client", deadline: Deadline) -> None:
        """``Client.wait`` in non-blocking mode: one wait for I/O."""
        busy = [link.batch for link in client._links
                if link.live and link.batch is not None and link.batch.ptr]
        if busy:
            ready = self._wait_any(busy, max(1, deadline.slice_ms()))
            for cc in ready or ():
                cc.set_timeout(1)
                _lib.gearman_client_wait(cc.ptr)   # so that run_tasks reads it
            if self._failures:
                self._after_step(client)

    # --- safe points ---------------------------------------------------------------
    def _settle(self) -> None:
        """Free the C side of every ended task (outside libgearman)."""
        ended, self._ended = self._ended, []
        for task in ended:
            addr = task._addr
            if addr is None or self.live.get(addr) is not task:
                continue
            del self.live[addr]
            LIVE.pop(addr, None)
            task._addr = None
            task._link.live -= 1
            _lib.gearman_task_free(addr)
            key = job_key(task)
            if key is not None:
                self._keyed.discard((task._link,) + key)
            if task._status_of is None and task._handle:
                self._issuers.issued(task._handle, task._link)

    def requeue(self, link: Link) -> None:
        """``link``'s server failed: its unfinished tasks go back to waiting
        (to the front, in order), the finished ones stay finished."""
        self._settle()
        back = []
        for addr, task in list(self.live.items()):
            if task._link is not link:
                continue
            del self.live[addr]
            LIVE.pop(addr, None)
            task._addr = None
            key = job_key(task)
            if key is not None:
                self._keyed.discard((link,) + key)
            if task._state == "finished":
                continue
            if task._background and task._handle and c_task_done(addr):
                task._state, task._rc = "finished", SUCCESS
                continue
            task.reset()
            task._server = None
            back.append(task)
        link.live = 0
        link.drop(link.batch)
        self.waiting.extendleft(reversed(back))
        if back:
            log.info("%d unfinished task(s) of %s go to the other servers", len(back), link.name)

    def abandon(self) -> None:
        """The client is closing: no task keeps a C address."""
        self._settle()
        for addr, task in self.live.items():
            LIVE.pop(addr, None)
            task._addr = None
        self.live.clear()
        self.waiting.clear()
        self._keyed.clear()
