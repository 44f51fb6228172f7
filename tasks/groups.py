"""The only place channel-layer group names are made, from ids already authorized."""

from __future__ import annotations

import hashlib


def group_for_owner(owner_key: str) -> str:
    """Group of every connection watching all of one owner's tasks."""
    # Hashed: the key is not secret, but a fixed short ASCII name is always a valid group.
    digest = hashlib.blake2b(owner_key.encode(), digest_size=16).hexdigest()
    return f"tl.owner.{digest}"


def group_for_task(task_id: str) -> str:
    """Group of every connection watching one task."""
    return f"tl.task.{task_id}"


def group_for_session(session_key: str) -> str:
    """Group of every connection of one Django session (closed together when it ends)."""
    # Hashed: the session key is a secret and must never appear in a Redis channel name.
    digest = hashlib.blake2b(b"session:" + session_key.encode(), digest_size=16).hexdigest()
    return f"tl.session.{digest}"
