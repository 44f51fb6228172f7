"""Fixtures: a real Redis (this run's own), a live Celery worker and a live Daphne."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support import Daphne, RedisServer, Visitor, Worker, redis_server


@pytest.fixture(scope="session")
def redis() -> RedisServer:
    return redis_server()


@pytest.fixture(scope="session")
def worker(django_db_setup: None, django_db_blocker: object) -> Iterator[Worker]:
    """A prefork worker (2 processes) shared by the session's tests."""
    w = Worker().start()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def daphne(django_db_setup: None) -> Iterator[Daphne]:
    d = Daphne().start()
    yield d
    d.stop()


@pytest.fixture
def live(transactional_db: None, worker: Worker, daphne: Daphne) -> Daphne:
    """The live stack with committed data: use with ``visitor``."""
    assert worker.alive(), worker.output()[-3000:]
    assert daphne.alive(), daphne.output()[-3000:]
    return daphne


@pytest.fixture
async def visitor(live: Daphne) -> AsyncIterator[Visitor]:
    async with Visitor(live) as v:
        yield v


@pytest.fixture
async def other_visitor(live: Daphne) -> AsyncIterator[Visitor]:
    async with Visitor(live) as v:
        yield v


@pytest.fixture(scope="session", autouse=True)
def _close_stray_database_sessions(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """Let the test database be dropped: end sessions that async helper threads left open."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
