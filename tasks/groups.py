"""The only place channel-layer group names are made, from ids already authorized.

Every name carries a tag of ``TASKLIGHT["REDIS_PREFIX"]``: two sites sharing one Redis
(and one channel-layer prefix) never see each other's groups, even where their owner
keys (``u:1``) or session keys coincide.
"""

from __future__ import annotations

import functools
import hashlib

from tasks import conf


def _site() -> str:
    return _tag(conf.get().REDIS_PREFIX)


@functools.lru_cache(maxsize=8)
def _tag(prefix: str) -> str:
    """The prefix's short tag, hashed once per prefix (group names are made on every publish)."""
    return hashlib.blake2b(prefix.encode(), digest_size=4).hexdigest()


def group_for_owner(owner_key: str) -> str:
    """Group of every connection watching all of one owner's tasks."""
    # Hashed: the key is not secret, but a fixed short ASCII name is always a valid group.
    digest = hashlib.blake2b(owner_key.encode(), digest_size=16).hexdigest()
    return f"tl.{_site()}.owner.{digest}"


def group_for_task(task_id: str) -> str:
    """Group of every connection watching one task."""
    return f"tl.{_site()}.task.{task_id}"


def group_for_session(session_key: str) -> str:
    """Group of every connection of one Django session (closed together when it ends)."""
    # Hashed: the session key is a secret and must never appear in a Redis channel name.
    digest = hashlib.blake2b(b"session:" + session_key.encode(), digest_size=16).hexdigest()
    return f"tl.{_site()}.session.{digest}"
