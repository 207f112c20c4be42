"""Every libgearman / gearmand behaviour pygear works around, in one table.

Each entry says what goes wrong, how it was seen, which versions have it,
and where pygear deals with it.  The code asks the table (``X.applies()``)
where a workaround can be skipped, and names the entry where it cannot.
"Seen" means reproduced on Debian 12's libgearman 1.1.20 / gearmand 1.1.20;
"checked" means read in gearman/gearmand's sources up to 1.1.22, the newest
release: none of these is fixed there.  A version with a known fix would get
``fixed_in``, and the workaround would then step aside.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

NEWEST_CHECKED = "1.1.22"


def _parse(version: str) -> Tuple[int, ...]:
    parts: List[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


class Workaround:
    __slots__ = ("name", "what", "evidence", "remedy", "where", "fixed_in", "server_side")

    def __init__(self, name: str, what: str, evidence: str, remedy: str, where: str,
                 fixed_in: Optional[str] = None, server_side: bool = False) -> None:
        self.name, self.what, self.evidence = name, what, evidence
        self.remedy, self.where = remedy, where
        self.fixed_in, self.server_side = fixed_in, server_side

    def applies(self) -> bool:
        """Whether the loaded libgearman needs it (gearmand's own bugs are
        assumed present: a client cannot tell a server's version cheaply)."""
        if self.fixed_in is None or self.server_side:
            return True
        from . import _lib
        loaded = _lib.version if _lib.dll is not None else None
        return loaded is None or _parse(loaded) < _parse(self.fixed_in)

    def __repr__(self) -> str:
        return "<workaround %s>" % self.name


TABLE: Dict[str, Workaround] = {}


def _add(*args: str, **kwargs: object) -> Workaround:
    entry = Workaround(*args, **kwargs)  # type: ignore[arg-type]
    TABLE[entry.name] = entry
    return entry


SIGNALS_HELD_IN_POLL = _add(
    "SIGNALS_HELD_IN_POLL",
    "gearman_wait() retries poll() on EINTR: with no timeout, Ctrl-C waits until the call returns",
    "seen: SIGINT ignored by a blocked gearman_client_do(); checked in libgearman/wait.cc",
    "libgearman never blocks longer than one 50 ms slice; the wait loop lets signals in between",
    "_wait.drive, _signals")
TASK_IS_FINISHED = _add(
    "TASK_IS_FINISHED",
    "gearman_task_is_finished() always returns false (its body lacks a return)",
    "checked in libgearman/task.cc, 1.1.20 to 1.1.22",
    "a task is done when gearman_task_return() leaves UNKNOWN_STATE (and COULD_NOT_CONNECT)",
    "_taskbook.c_task_done")
UNFINISHED_TASK_FREE = _add(
    "UNFINISHED_TASK_FREE",
    "freeing an unfinished task never lowers the client's new/running task counters: "
    "the next run_tasks spins in C or never returns SUCCESS",
    "seen: run_tasks at 100% CPU after gearman_task_free of a running task",
    "an unfinished C task is never freed: its whole C client is dropped and made anew",
    "_link.CClient.discard")
NON_GEARMAN_PEER = _add(
    "NON_GEARMAN_PEER",
    "libgearman's packet parser segfaults on replies that are not Gearman "
    "(memcached's ERROR\\r\\n, random bytes, command 0xFFFFFFFF)",
    "seen: exit 139 in Client.do() against each of those three peers",
    "pygear echoes each server over a plain socket (_probe) before any C handle connects to it",
    "_probe.check, _link, worker._WorkerLink")
GRAB_AFTER_JOB = _add(
    "GRAB_AFTER_JOB",
    "gearman_worker_grab_job() that finds no job after one was handed out (outside "
    "gearman_worker_work) leaves its state on GRAB_JOB_SEND with a NULL connection: the next "
    "grab or work segfaults; in non-blocking mode any NO_JOBS after an IO_WAIT does",
    "seen; checked in libgearman/worker.cc (state is reset only by PRE_SLEEP, which only "
    "gearman_worker_work reaches)",
    "grab_job() renews the C worker after such a NO_JOBS; a replaced C worker is kept until "
    "the jobs it handed out are finished",
    "worker.Worker.grab_job")
RE_REGISTER = _add(
    "RE_REGISTER",
    "add_function of a name that is registered, or that was unregistered and not yet sent, "
    "queues CAN_DO before the stale CANT_DO/RESET: gearmand ends with no worker for it",
    "seen: 7 of 12 re-registration sequences left the function with 0 available workers",
    "any change to an existing registration renews the C worker with the whole function list",
    "worker.Worker._register")
WORK_EXCEPTION_MANGLED = _add(
    "WORK_EXCEPTION_MANGLED",
    "gearmand answers WORK_EXCEPTION, to clients without the exceptions option, with a "
    "WORK_FAIL whose handle has a trailing NUL: libgearman clients never match it and wait",
    "seen with the gearman tool and libgearman clients against gearmand 1.1.20",
    "a raising job function ends with WORK_WARNING(report) + WORK_FAIL; pygear's client "
    "turns the pair back into WORK_EXCEPTION",
    "_report", server_side=True)
EXCEPTIONS_OPTION = _add(
    "EXCEPTIONS_OPTION",
    "the 'exceptions' server option applies only to servers already added, and "
    "gearman_client_set_server_option() is a blocking round trip",
    "seen: option set on a fresh client has no effect; checked in libgearman/client.cc",
    "each C client asks its one server for it right after connecting, one slice at a time",
    "_link.CClient.open")
LAST_SERVER_GETS_ALL = _add(
    "LAST_SERVER_GETS_ALL",
    "with several servers libgearman sends every task to the first idle connection (the last "
    "server added), fails over only on connect errors, and tasks sent to a dead server wait "
    "forever",
    "seen: 20 of 20 jobs on the second of two servers; checked in libgearman/run.cc",
    "one C client per server; pygear places every job itself (_placement)",
    "_link, _placement")
ENV_SERVERS = _add(
    "ENV_SERVERS",
    "gearman_client_create() and gearman_worker_create() add the servers in $GEARMAN_SERVERS",
    "seen",
    "pygear removes them from every C handle it creates and takes them into its own list",
    "_link.CClient.open, worker")
SMALL_SOCKET_BUFFERS = _add(
    "SMALL_SOCKET_BUFFERS",
    "libgearman sets 32 KiB SO_SNDBUF/SO_RCVBUF: on loopback one segment is in flight and the "
    "peer's 40 ms delayed ACK paces every 64 KiB (a 1 MiB round trip takes ~0.5 s)",
    "seen (bench: do 1 MiB); checked in libgearman/connection.cc",
    "the socket of each connection is widened to 1 MiB once it is up (PYGEAR_WIDEN_BUFFERS=0 "
    "turns it off)",
    "_sockets.Watch.adopt")
UUID_PER_TASK = _add(
    "UUID_PER_TASK",
    "every task added without a unique key costs a uuid_generate_time_safe() call, which "
    "tries the uuidd socket (~7 us) even with GENERATE_UNIQUE off",
    "seen (gdb backtrace, strace)",
    "pygear names such jobs itself (_unique)",
    "_unique.new_unique")
TASK_LIST_WALK = _add(
    "TASK_LIST_WALK",
    "libgearman matches each reply to its task by walking the client's whole task list: a "
    "batch of N tasks costs O(N^2) (20,000 tasks: 4.2 s in C)",
    "seen (bench: tasks)",
    "at most 1,000 tasks per C client at a time; the rest wait in Python",
    "_taskbook.WINDOW")
STATUS_TO_FIRST_TASK = _add(
    "STATUS_TO_FIRST_TASK",
    "a STATUS_RES goes to the first task in the client with that job handle: a second status "
    "task for the same handle in one C client waits forever (run_tasks never returns SUCCESS)",
    "seen, in C too (gearman_client_add_task_status twice, then run_tasks: TIMEOUT)",
    "one status task per handle per server in C at a time; the next waits in Python",
    "_taskbook.TaskBook._choose")
STATUS_TAKES_JOB_CREATED = _add(
    "STATUS_TAKES_JOB_CREATED",
    "a status task added after a job task, before the connection's first JOB_CREATED, "
    "takes that JOB_CREATED (status tasks keep created_id 0 and are matched first): the "
    "job task never ends",
    "seen; checked in libgearman/client.cc (JOB_CREATED is matched by created_id) and run.cc",
    "a status task waits in Python while a job task on its server has no handle yet",
    "_taskbook.TaskBook._may_ask")
SAME_UNIQUE_IN_ONE_CLIENT = _add(
    "SAME_UNIQUE_IN_ONE_CLIENT",
    "two foreground tasks with the same function and unique key in one C client: gearmand "
    "gives both the same job handle and libgearman ends only one of them; the other waits "
    "forever (run_tasks hangs, or times out)",
    "seen (libgearman 1.1.20, gearmand 1.1.20)",
    "a keyed foreground task waits in Python while one with its function and key is in C "
    "on its server; it is sent once that one ended",
    "_taskbook.TaskBook._choose")
EMPTY_WORKLOAD = _add(
    "EMPTY_WORKLOAD",
    "a non-NULL workload pointer with size 0 is refused (INVALID_ARGUMENT)",
    "seen",
    "an empty payload is passed as NULL",
    "_taskbook, _do, worker")
NAMESPACED_FUNCTION_NAME = _add(
    "NAMESPACED_FUNCTION_NAME",
    "gearman_job_function_name() returns the wire name, namespace included",
    "seen",
    "jobs are dispatched by the context of their registration, not by name",
    "worker.JOB_CONTEXTS")
FAIL_RETURN_CODE = _add(
    "FAIL_RETURN_CODE",
    "a v1 job function that reports WORK_FAIL through its return code makes the next "
    "gearman_worker_work() return SUCCESS without running a job",
    "seen",
    "pygear's job trampoline always replies itself (send_complete/send_fail) and returns success",
    "worker._on_job")
GRAB_NO_WAIT = _add(
    "GRAB_NO_WAIT",
    "gearman_worker_grab_job() outside gearman_worker_work() never sends PRE_SLEEP: it returns "
    "NO_JOBS at once, and gearmand will not wake it",
    "checked in libgearman/worker.cc",
    "grab_job() naps between grabs, backing off to one slice",
    "worker.Worker.grab_job")
