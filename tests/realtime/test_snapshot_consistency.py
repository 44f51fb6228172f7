"""Snapshots and resync never pair an old row with a newer seq (docs/realtime.md)."""

from __future__ import annotations

import uuid

import pytest

from tasks import live
from tasks.models import TaskRun
from tasks.objects import next_seq, now, row_fields
from tasks.selectors import objects_for_rows


async def _row(state: str) -> TaskRun:
    moment = now()
    return await TaskRun.objects.acreate(
        id=uuid.uuid4(), name="demo.sleepy", label="x", owner_key="v:test", state=state,
        created_at=moment, updated_at=moment, seq=next_seq(0),
    )


@pytest.mark.django_db(transaction=True)
async def test_a_row_read_before_its_terminal_change_is_read_again():
    row = await _row("running")
    await live.merge(str(row.id), row_fields(row), owner_key="v:test", seq_floor=row.seq)
    stale = await TaskRun.objects.aget(id=row.id)  # read now, while still running
    # The worker finishes it: row first, then the live record (which gets a higher seq).
    row.state, row.seq = "succeeded", next_seq(row.seq)
    await row.asave()
    merged = await live.merge(str(row.id), {"state": "succeeded"}, owner_key="v:test", seq_floor=row.seq)
    [obj] = await objects_for_rows([stale])
    assert obj["state"] == "succeeded"
    assert obj["seq"] == merged.record["seq"]


@pytest.mark.django_db(transaction=True)
async def test_a_row_ahead_of_its_live_record_ranks_above_it():
    row = await _row("running")
    merged = await live.merge(str(row.id), row_fields(row), owner_key="v:test", seq_floor=row.seq + 10**9)
    # Finished in the database, never published; the live record's clock ran ahead.
    row.state, row.seq = "succeeded", next_seq(row.seq)
    await row.asave()
    [obj] = await objects_for_rows([row])
    assert obj["state"] == "succeeded"
    assert obj["seq"] > merged.record["seq"]
