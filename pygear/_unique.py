"""Unique keys for jobs submitted without one.

libgearman 1.1.20 (as Debian builds it) gives every task added without a
unique key a UUID from ``uuid_generate_time_safe()``, which first tries to
reach the uuidd daemon: a socket, a failed connect and a close on every job,
about 7 us here, on the critical path of each round trip
(_workarounds.UUID_PER_TASK).  pygear names the
job itself instead: a random UUID-shaped prefix per process and a counter,
as unique as libgearman's (two processes never share a prefix, and a forked
child draws a new one), for a fraction of a microsecond.
"""
from __future__ import annotations

import itertools
import os
import uuid

prefix = b""
counter = itertools.count()


def _new_prefix() -> None:
    global prefix, counter
    text = str(uuid.uuid4())           # 8-4-4-4-12 hex digits
    prefix = text[:24].encode("ascii")   # the last 12 digits are the counter's
    counter = itertools.count()


def new_unique() -> bytes:
    """A key no other job of any process gets: 36 bytes, UUID-shaped
    (the do* methods build it inline: ``b"%s%012x" % (prefix, next(counter))``)."""
    return b"%s%012x" % (prefix, next(counter))


_new_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_prefix)
