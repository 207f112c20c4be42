"""pygear's logging, and libgearman's log lines.

Everything pygear says goes to the ``pygear`` logger (a NullHandler by
default): servers going down and coming back, failover, workers losing and
regaining their servers, job functions that raised.  libgearman's own log
lines go to ``pygear.libgearman`` at DEBUG (when that is enabled as the C
handle is made), and to the function given to
``set_log_fn``.

libgearman calls its log function from inside any C call, so the one
trampoline below is created at import and kept for the life of the process;
each settings record that wants log lines registers a target in
``TARGETS`` and passes its key as the C context.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Dict, Optional, Tuple

from . import _lib, _signals

log = logging.getLogger("pygear")
log.addHandler(logging.NullHandler())
libgearman_log = logging.getLogger("pygear.libgearman")

_VERBOSE_DEBUG = _lib.VERBOSE_NAMES.index("DEBUG")

# key -> (the user's function or None, the verbosity it asked for)
TARGETS: Dict[int, Tuple[Optional[Callable[[str], Any]], int]] = {}
_keys = itertools.count(1)


def new_target(fn: Optional[Callable[[str], Any]], verbose: int) -> int:
    key = next(_keys)
    TARGETS[key] = (fn, verbose)
    return key


def drop_target(key: Optional[int]) -> None:
    if key is not None:
        TARGETS.pop(key, None)


def c_verbosity(user_verbose: int) -> int:
    """What to ask libgearman for: the user's level, or DEBUG when
    ``pygear.libgearman`` is enabled for it (checked when a C handle is
    made: logging configured later applies to handles made later)."""
    if libgearman_log.isEnabledFor(logging.DEBUG):
        return max(user_verbose, _VERBOSE_DEBUG)
    return user_verbose


def _on_log(line: Optional[bytes], level: int, context: Optional[int]) -> None:
    # Runs inside any libgearman call, with signals blocked; nothing may
    # cross the C frame: a failing user logger is muted.
    try:
        text = line.decode("utf-8", "replace") if line else ""
        if "timeout reached" in text:
            return      # pygear's own 50 ms slices (pygear/_wait.py), not news
        target = TARGETS.get(context or 0)
        # At DEBUG whatever libgearman's level: pygear itself reports what
        # matters (servers down and up, failover) at its own levels.
        libgearman_log.debug("%s %s", _lib.VERBOSE_NAMES[level] if 0 <= level < 6 else level,
                             text)
        if target is not None and target[0] is not None and level <= target[1]:
            _signals.run_unblocked(target[0], text)
    except BaseException:
        pass


LOG_TRAMPOLINE = _lib.log_fn(_on_log)


def tell_user(settings: Any, verbose: int, text: str) -> None:
    """A line of pygear's own (a server down or back) for the log function
    given to ``set_log_fn``, as libgearman's would reach it."""
    fn = getattr(settings, "log_fn", None)
    if fn is not None and settings.log_verbose >= verbose:
        try:
            fn(text)
        except Exception:
            pass
