"""The Admin reply parser, fed replies captured from gearmand 1.1.20 through a
fake socket that replays them in scripted chunks."""
import socket
import time

import pytest

import pygear.admin
from pygear.admin import Admin
from pygear.errors import ERROR, LOST_CONNECTION, TIMEOUT, GearmanError

pytestmark = pytest.mark.timeout(20)

# Replies captured byte for byte from gearmand 1.1.20+ds (Debian 12).
STATUS = b"q2\t1\t0\t0\nq1\t3\t0\t0\nnew\t0\t0\t0\nrev\t0\t0\t2\nup\t0\t0\t1\n.\n"
WORKERS = (b"18 127.0.0.1 - :\n17 127.0.0.1 - : rev\n16 127.0.0.1 - : rev up\n"
           b"15 127.0.0.1 my id with space : fb fa\n.\n")
SHOW_JOBS = b"H:vm:1\t0\t1\t0\nH:vm:2\t0\t0\t1\nH:vm:4\t0\t0\t1\n.\n"
SHOW_UNIQUE = b"749274f4-eade-11f1-abc4-02fc00000001\nmyuniq\n.\n"
OK_CRLF = b"OK\r\n"
ERR_UNKNOWN_COMMAND = b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
ERR_UNKNOWN_JOB = b"ERR UNKNOWN_JOB\r\n"
ERR_NOT_FOUND = b"ERR function not found\r\n"
ERR_BUSY = b"ERR there are still connected workers or executing clients\r\n"
ERR_SHOW = b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"


class FakeSocket:
    """Replays ``chunks`` one recv at a time; then EOF, or silence if ``silent``."""

    def __init__(self, chunks, silent=False, delay=0.0):
        self.chunks = list(chunks)
        self.silent = silent
        self.delay = delay
        self.sent = b""
        self.closed = False
        self.timeout = None

    def settimeout(self, value):
        self.timeout = value

    def sendall(self, data):
        self.sent += data

    def recv(self, size):
        if self.delay:
            time.sleep(self.delay)
        if self.chunks:
            return self.chunks.pop(0)
        if self.silent:
            raise socket.timeout("timed out")
        return b""

    def close(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    """``fake(*chunks)`` makes the next connection replay those chunks."""
    made = []

    def script(*chunks, **kw):
        sock = FakeSocket(chunks, **kw)
        made.append(sock)
        return sock

    handed = []

    def connect(self, deadline, command):
        sock = made[len(handed)]  # IndexError: an unexpected reconnect
        handed.append(sock)
        return sock

    monkeypatch.setattr(Admin, "_connect", connect)
    script.made = made
    return script


def split_every_byte(data):
    return [data[i:i + 1] for i in range(len(data))]


# -- listings -------------------------------------------------------------

def test_status_parses_rows_with_ints_including_functions_without_workers(fake):
    fake(STATUS)
    assert Admin().status() == [
        {"function": "q2", "total": 1, "running": 0, "available_workers": 0},
        {"function": "q1", "total": 3, "running": 0, "available_workers": 0},
        {"function": "new", "total": 0, "running": 0, "available_workers": 0},
        {"function": "rev", "total": 0, "running": 0, "available_workers": 2},
        {"function": "up", "total": 0, "running": 0, "available_workers": 1},
    ]
    assert fake.made[0].sent == b"status\r\n"


def test_empty_listings_are_empty_lists(fake):
    fake(b".\n", b".\n", b".\n", b".\n")
    a = Admin()
    assert a.status() == []
    assert a.workers() == []
    assert a.show_jobs() == []
    assert a.show_unique_jobs() == []


def test_workers_lists_every_function_and_idle_connections_have_none(fake):
    fake(WORKERS)
    assert Admin().workers() == [
        {"fd": "18", "ip_address": "127.0.0.1", "client_id": "-", "functions": []},
        {"fd": "17", "ip_address": "127.0.0.1", "client_id": "-", "functions": ["rev"]},
        {"fd": "16", "ip_address": "127.0.0.1", "client_id": "-", "functions": ["rev", "up"]},
        {"fd": "15", "ip_address": "127.0.0.1", "client_id": "my id with space",
         "functions": ["fb", "fa"]},
    ]


def test_workers_reads_ipv6_addresses(fake):
    fake(b"21 ::1 - : f1\n.\n")
    assert Admin().workers() == [
        {"fd": "21", "ip_address": "::1", "client_id": "-", "functions": ["f1"]}]


def test_show_jobs_parses_handles_and_flags(fake):
    fake(SHOW_JOBS)
    assert Admin().show_jobs() == [
        {"handle": "H:vm:1", "retries": 0, "ignore_job": 1, "job_queued": 0},
        {"handle": "H:vm:2", "retries": 0, "ignore_job": 0, "job_queued": 1},
        {"handle": "H:vm:4", "retries": 0, "ignore_job": 0, "job_queued": 1},
    ]


def test_show_unique_jobs_returns_keys_also_from_newer_servers(fake):
    fake(SHOW_UNIQUE, b"myuniq\tH:vm:3\n.\n")
    a = Admin()
    assert a.show_unique_jobs() == ["749274f4-eade-11f1-abc4-02fc00000001", "myuniq"]
    assert a.show_unique_jobs() == ["myuniq"]


@pytest.mark.parametrize("chunks", [
    [STATUS],
    split_every_byte(STATUS),
    [STATUS[:5], STATUS[5:-1], STATUS[-1:]],          # ".\n" split
    [STATUS.replace(b"\n", b"\r\n")],                  # CRLF rows
    split_every_byte(STATUS.replace(b"\n", b"\r\n")),  # CR and LF in different reads
], ids=["whole", "bytewise", "split-terminator", "crlf", "crlf-bytewise"])
def test_status_survives_any_chunking_and_either_line_ending(fake, chunks):
    fake(*chunks)
    rows = Admin().status()
    assert [r["function"] for r in rows] == ["q2", "q1", "new", "rev", "up"]
    assert rows[3]["available_workers"] == 2


# -- single-line replies --------------------------------------------------

def test_value_replies(fake):
    fake(b"OK 1.1.20+ds\n", b"OK 3476\n", b"OK ERROR\n")
    a = Admin()
    assert a.version() == "1.1.20+ds"
    assert a.getpid() == 3476
    assert a.verbose() == "ERROR"
    assert fake.made[0].sent == b"version\r\ngetpid\r\nverbose\r\n"


def test_value_reply_with_crlf_split_across_reads(fake):
    fake(b"OK 12", b"34\r", b"\n")
    assert Admin().getpid() == 1234


def test_ok_commands_send_crlf_terminated_lines(fake):
    # CRLF matters: gearmand 1.1.20 cuts two bytes off a "create function"
    # name, so "create function newf\n" would create "new".
    fake(OK_CRLF, OK_CRLF, b"OK\n", b"OK\r", b"\n", OK_CRLF)
    a = Admin()
    assert a.create_function("newf") is True
    assert a.maxqueue("newf", 5) is True
    assert a.cancel_job("H:vm:1") is True
    assert a.drop_function("newf") is True
    assert a.shutdown(graceful=True) is True
    assert fake.made[0].sent == (b"create function newf\r\nmaxqueue newf 5\r\n"
                                 b"cancel job H:vm:1\r\ndrop function newf\r\n"
                                 b"shutdown graceful\r\n")


def test_shutdown_that_succeeds_closes_the_connection(fake):
    fake(OK_CRLF)
    fake(b"OK 1\n")
    a = Admin()
    a.shutdown()
    assert fake.made[0].closed
    assert a.getpid() == 1  # a new connection


# -- ERR replies ----------------------------------------------------------

@pytest.mark.parametrize("reply, call, code, text", [
    (ERR_UNKNOWN_COMMAND, lambda a: a.shutdown(), "UNKNOWN_COMMAND",
     "Unknown server commandshutdown"),
    (ERR_UNKNOWN_JOB, lambda a: a.cancel_job("H:x:1"), "UNKNOWN_JOB", ""),
    (ERR_NOT_FOUND, lambda a: a.drop_function("nosuch"), None, "function not found"),
    (ERR_BUSY, lambda a: a.drop_function("rev"), None,
     "there are still connected workers or executing clients"),
    (ERR_SHOW, lambda a: a.show_jobs(), "UNKNOWN_SHOW_ARGUMENTS", ""),
    (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments%21\r\n",
     lambda a: a.status(), "INVALID_ARGUMENTS", "An incomplete set of arguments!"),
    (b"ERR X bad\n", lambda a: a.getpid(), "X", "bad"),
])
def test_err_raises_error_with_code_and_decoded_text(fake, reply, call, code, text):
    fake(reply, b"OK 1.1.20+ds\n")
    a = Admin()
    with pytest.raises(ERROR) as info:
        call(a)
    assert isinstance(info.value, GearmanError)
    assert info.value.server_code == code
    assert info.value.text == text
    assert text in str(info.value)
    # The ERR line was the whole reply: the same connection carries on.
    assert a.version() == "1.1.20+ds"
    assert len(fake.made) == 1 and not fake.made[0].closed


# -- truncated, malformed, silent ----------------------------------------

@pytest.mark.parametrize("call, partial", [
    (lambda a: a.status(), STATUS[:-2]),
    (lambda a: a.status(), b"q1\t3\t0"),
    (lambda a: a.workers(), WORKERS[:30]),
    (lambda a: a.version(), b"OK 1.1"),
    (lambda a: a.create_function("f"), b""),
])
def test_truncated_reply_raises_lost_connection_and_next_call_reconnects(fake, call, partial):
    fake(partial)
    fake(b"OK 7\n")
    a = Admin()
    with pytest.raises(LOST_CONNECTION) as info:
        call(a)
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, GearmanError)
    assert fake.made[0].closed
    assert a.getpid() == 7
    assert len(fake.made) == 2


@pytest.mark.parametrize("reply, call", [
    (b"q1\t3\tx\t0\n.\n", lambda a: a.status()),
    (b"q1 3 0 0\n.\n", lambda a: a.status()),
    (b"q1\t3\t0\n.\n", lambda a: a.status()),
    (b"q1\t-3\t0\t0\n.\n", lambda a: a.status()),
    (b"15 127.0.0.1 -\n.\n", lambda a: a.workers()),
    (b"garbage\n.\n", lambda a: a.workers()),
    (b"H:vm:1\t0\t0\n.\n", lambda a: a.show_jobs()),
    (b"OK abc\n", lambda a: a.getpid()),
    (b"OK\r\n", lambda a: a.version()),
    (b"HELLO\r\n", lambda a: a.create_function("f")),
    (b"NOPE\n", lambda a: a.maxqueue("f", 1)),
])
def test_malformed_reply_raises_gearman_error_and_drops_the_connection(fake, reply, call):
    fake(reply)
    a = Admin()
    with pytest.raises(GearmanError, match="malformed"):
        call(a)
    assert fake.made[0].closed


def test_status_rows_are_all_or_nothing(fake):
    fake(b"good\t1\t0\t0\nbad\t1\t0\n.\n")
    with pytest.raises(GearmanError):
        Admin().status()


def test_endless_line_is_refused(fake, monkeypatch):
    monkeypatch.setattr(pygear.admin, "_MAX_LINE", 1000)
    fake(*[b"x" * 100] * 20)
    with pytest.raises(GearmanError, match="malformed"):
        Admin().status()


def test_silent_server_raises_timeout(fake):
    fake(b"q1\t1", silent=True)
    a = Admin(timeout=0.5)
    with pytest.raises(TIMEOUT) as info:
        a.status()
    assert isinstance(info.value, TimeoutError)
    assert fake.made[0].closed


def test_timeout_bounds_the_whole_reply_not_each_read(fake):
    # A server trickling one byte per read, never finishing a line.
    fake(*[b"x"] * 1000, delay=0.05)
    start = time.monotonic()
    with pytest.raises(TIMEOUT):
        Admin(timeout=0.4).status()
    assert time.monotonic() - start < 1.5


# -- arguments ------------------------------------------------------------

BAD_NAMES = ["", "a b", "a\tb", "x\r\nshutdown", "x\nversion", "x\rstatus",
             "nul\x00", "nbsp\u00a0x"]


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize("call", [
    lambda a, n: a.create_function(n), lambda a, n: a.drop_function(n),
    lambda a, n: a.cancel_job(n), lambda a, n: a.maxqueue(n, 1),
], ids=["create", "drop", "cancel", "maxqueue"])
def test_names_that_could_inject_are_refused_before_sending(fake, bad, call):
    fake()
    with pytest.raises(ValueError):
        call(Admin(), bad)
    assert fake.made[0].sent == b""


@pytest.mark.parametrize("bad", [None, b"fn", 3])
def test_names_must_be_str(fake, bad):
    with pytest.raises(TypeError):
        Admin().create_function(bad)


@pytest.mark.parametrize("size, error", [
    (True, TypeError), (1.5, TypeError), ("3", TypeError), (None, TypeError),
    (-1, ValueError), (2 ** 31, ValueError),
])
def test_maxqueue_size_is_checked(fake, size, error):
    with pytest.raises(error):
        Admin().maxqueue("f", size)


def test_constructor_checks_and_strips_ipv6_brackets():
    assert Admin("[::1]", 4731).host == "::1"
    assert Admin("::1").host == "::1"
    assert "[::1]:4731" in repr(Admin("::1", 4731))
    with pytest.raises(TypeError):
        Admin(port="4730")
    with pytest.raises(ValueError):
        Admin(port=70000)
    with pytest.raises(ValueError):
        Admin(timeout=0)
    with pytest.raises(TypeError):
        Admin(timeout="1")


def test_context_manager_closes(fake):
    fake(b"OK 1\n")
    with Admin() as a:
        a.getpid()
        assert "connected" in repr(a)
    assert fake.made[0].closed
    assert "idle" in repr(a)
