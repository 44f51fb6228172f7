"""Process-local fan-out of task updates (docs/realtime.md).

With one channel-layer group membership per connection, every update costs each
watching connection a trip through its own layer queue, a deserialisation and
Channels' dispatch (which also hops to the sync thread to close old database
connections): about 280 us per frame per connection on this machine. Instead, each
Daphne process has one hub: one channel, a member of each group that some local
connection watches, and a pump that receives each update once and hands the already
encoded frame to each local watcher in turn. The channel layer still carries updates
between processes; only the last step is local.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from channels.layers import get_channel_layer

from tasks import conf

logger = logging.getLogger(__name__)


class Member(Protocol):
    async def deliver(self, event: dict[str, Any]) -> None: ...


class Hub:
    def __init__(self) -> None:
        layer = get_channel_layer(conf.get().CHANNEL_LAYER)
        if layer is None:
            raise RuntimeError("Tasklight's channel layer is not configured (manage.py check: tasklight.E001).")
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        # Groups whose subscription is under way: later joiners wait for it.
        self._joining: dict[str, asyncio.Future[bool]] = {}
        self._started = asyncio.Lock()
        self._pump: asyncio.Task[None] | None = None
        self.delivered = 0

    async def _ensure_started(self) -> str:
        async with self._started:
            if self.channel is None:
                self.channel = await self.layer.new_channel("tasklight.hub.")
                self._pump = asyncio.get_running_loop().create_task(self._run())
            return self.channel

    async def join(self, group: str, member: Member) -> None:
        """Deliver the group's messages to ``member`` from now on (once this returns)."""
        channel = await self._ensure_started()
        members = self.members.get(group)
        if members is not None:
            members.add(member)
            pending = self._joining.get(group)
            if pending is not None:
                try:
                    ok = await asyncio.shield(pending)
                except BaseException:
                    members.discard(member)
                    raise
                if not ok:
                    members.discard(member)
                    raise RuntimeError(f"could not subscribe to {group}")
            return
        members = self.members[group] = {member}
        joined = asyncio.get_running_loop().create_future()
        self._joining[group] = joined
        try:
            await self.layer.group_add(group, channel)
            joined.set_result(True)
        except BaseException:
            # Not subscribed: forget it, so the next join tries again.
            self.members.pop(group, None)
            joined.set_result(False)
            raise
        finally:
            self._joining.pop(group, None)

    async def leave(self, group: str, member: Member) -> None:
        members = self.members.get(group)
        if not members or member not in members:
            return
        members.discard(member)
        if not members:
            del self.members[group]
            if self.channel is not None:
                await self.layer.group_discard(group, self.channel)

    async def _run(self) -> None:
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Tasklight hub could not receive; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            members = self.members.get(message.get("group", ""))
            if not members:
                continue
            for member in list(members):
                try:
                    await member.deliver(message)
                    self.delivered += 1
                except Exception:
                    logger.warning("Could not deliver a %s to a connection", message.get("type"), exc_info=True)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub (one per Daphne process)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
