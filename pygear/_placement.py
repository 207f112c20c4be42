"""Which server a job goes to, and which servers are up.

- A job given a unique key goes to the server with the highest
  rendezvous weight for that key among the servers that are up, so that
  jobs with the same key meet on one gearmand (which coalesces them) and a
  server going down moves only its own keys.
- A job without a key goes round-robin over the servers that are up.
- A server that refused, dropped or did not answer is down for a backoff
  (1 s, doubling to 30 s) and is tried again after it; servers that are
  down still come last in every order, so a client whose only server
  restarted succeeds on its next call.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import time
from typing import Any, Dict, Generic, List, Optional, Protocol, Sequence, TypeVar

from . import _log

log = logging.getLogger("pygear")

_ERROR, _INFO = 2, 3          # gearman_verbose_t
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


class Health:
    """Whether one server is up, and when to try it again if not."""

    __slots__ = ("name", "down_until", "backoff", "reason", "settings")

    def __init__(self, name: str, settings: Any = None) -> None:
        self.name = name
        self.settings = settings      # whose log function hears of it
        self.down_until = 0.0
        self.backoff = 0.0
        self.reason: Optional[str] = None

    @property
    def up(self) -> bool:
        return self.reason is None or time.monotonic() >= self.down_until

    def down(self, reason: str, most: float = BACKOFF_MAX) -> None:
        self.backoff = BACKOFF_FIRST if not self.backoff else min(self.backoff * 2, most)
        self.down_until = time.monotonic() + self.backoff
        if self.reason is None:
            log.warning("job server %s is down: %s (next try in %gs)", self.name, reason,
                        self.backoff)
            _log.tell_user(self.settings, _ERROR, "job server %s is down: %s"
                           % (self.name, reason))
        else:
            log.debug("job server %s still down: %s (next try in %gs)", self.name, reason,
                      self.backoff)
        self.reason = reason

    def recovered(self) -> None:
        if self.reason is not None:
            log.warning("job server %s is up again", self.name)
            _log.tell_user(self.settings, _INFO, "job server %s is up again" % self.name)
        self.reason = None
        self.backoff = 0.0
        self.down_until = 0.0


@functools.lru_cache(maxsize=256)
def _keyed_hash(server: str) -> Any:
    # keying blake2b costs as much as hashing a short key: done once per server
    return hashlib.blake2b(digest_size=8, key=server.encode("utf-8")[:64])


def weight(key: bytes, server: str) -> int:
    h = _keyed_hash(server).copy()
    h.update(key)
    return int.from_bytes(h.digest(), "big")


class HasHealth(Protocol):
    health: Health
    name: str


L = TypeVar("L", bound=HasHealth)


class Placement(Generic[L]):
    """Orders a client's servers for one job."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def order(self, links: Sequence[L], key: Optional[bytes]) -> List[L]:
        """Every server, the one to try first first."""
        if len(links) <= 1:
            return list(links)
        up = [link for link in links if link.health.up]
        down = sorted((link for link in links if not link.health.up),
                      key=lambda link: link.health.down_until)
        if key is None:
            if up:
                start = next(self._turn) % len(up)
                up = up[start:] + up[:start]
        else:
            up.sort(key=lambda link: weight(key, link.name), reverse=True)
        return up + down


class Issuers(Generic[L]):
    """Which server gave this client each job handle.  Handles are unique
    per server only (two fresh gearmands both issue H:host:1), so a handle
    two servers gave is remembered as ambiguous: every server is asked."""

    REMEMBERED = 100_000

    def __init__(self, links: Sequence[L]) -> None:
        self._links = links            # the client's list, read as it changes
        self._of: Dict[str, Optional[L]] = {}

    def issued(self, handle: str, link: L) -> None:
        if len(self._links) > 1:
            if len(self._of) >= self.REMEMBERED:
                self._of.clear()
            known = self._of.get(handle, link)
            self._of[handle] = link if known is link else None

    def issuer(self, handle: str) -> Optional[L]:
        return self._of.get(handle)

    def clear(self) -> None:
        self._of.clear()
