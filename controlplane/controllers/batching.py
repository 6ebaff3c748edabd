"""A controller that works in rounds: every key ready in the queue (up to a round size) is decided
together and its writes go in one Batch call.

For controllers whose keys arrive in bursts — the scheduler (a Job creating hundreds of pods),
the garbage collector (a Job's pods when the Job goes), event expiry — one RPC per round instead
of one per key is the difference between keeping up and falling behind (docs/design.md, "Performance
principles"). The queue's guarantees still hold: a key is in at most one round at a time, and a
key added while its round runs is taken again by a later round.
"""

from __future__ import annotations

import asyncio
import logging

from ketch.api import errors

from .base import Controller

log = logging.getLogger(__name__)


class BatchingController(Controller):
    """Subclasses implement process(keys); errors it raises re-queue the whole round."""

    round_size = 500

    async def process(self, keys: list[str]) -> None:
        raise NotImplementedError

    async def sync(self, key: str) -> None:
        await self.process([key])

    async def run(self) -> None:
        await self.ctx.informers.wait_for_sync()
        try:
            while True:
                first = await self.queue.get()
                if first is None:
                    return
                await asyncio.sleep(0)  # let a burst of watch events land in the queue
                keys = [first]
                while len(self.queue) and len(keys) < self.round_size:
                    k = await self.queue.get()
                    if k is None:
                        break
                    keys.append(k)
                try:
                    await self.process(keys)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    if isinstance(err, errors.StatusError):
                        log.info("%s: a round of %d keys failed, requeueing: %s", self.name, len(keys), err)
                    else:
                        log.exception("%s: a round of %d keys failed, requeueing", self.name, len(keys))
                    for k in keys:
                        self.queue.add_rate_limited(k)
                finally:
                    for k in keys:
                        self.queue.done(k)
        finally:
            self.queue.shutdown()
