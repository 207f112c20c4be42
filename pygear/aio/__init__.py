"""pygear.aio: the asyncio client, worker and admin.

``aio.Client`` drives libgearman in the loop's own thread, through the
sockets pygear knows (no thread hand-off per job); ``aio.Worker`` runs its
job functions concurrently, coroutines in the loop and plain functions in
threads; ``aio.Admin`` is the admin protocol, awaitable.  Same serializers,
errors, exception reports and cluster rules as the blocking API.
"""
from ._admin import Admin
from ._client import Client, Event
from ._worker import Worker

__all__ = ["Admin", "Client", "Event", "Worker"]
