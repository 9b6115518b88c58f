"""The admin bookkeeping: audit entries, dashboard sessions and the login throttle."""

from __future__ import annotations

from datetime import timedelta

from taskflow.repository.base import AdminSession, TaskRepository
from tests.conformance.records import at, tid

CLIENT = "c" * 32
OTHER_CLIENT = "d" * 32
USER = "a" * 32
OTHER_USER = "b" * 32
WINDOW_START = at(0)


# -- audit ---------------------------------------------------------------------------


async def test_audit_entries_read_back_newest_first(backend: TaskRepository) -> None:
    first = await backend.insert_audit(
        "cancel", actor="alice", task_id=tid(1), detail={"why": "stuck ✓"}, now=at(1)
    )
    second = await backend.insert_audit("login", actor="bob", task_id=None, detail=None, now=at(2))
    assert second.entry_id > first.entry_id
    assert (first.action, first.actor, first.task_id, first.detail) == (
        "cancel",
        "alice",
        tid(1),
        {"why": "stuck ✓"},
    )
    assert second.detail == {}
    assert await backend.list_audit(limit=10) == [second, first]


async def test_audit_pages_with_before(backend: TaskRepository) -> None:
    entries = [
        await backend.insert_audit("retry", actor="a", task_id=None, detail={"n": n}, now=at(n))
        for n in range(5)
    ]
    newest = await backend.list_audit(limit=2)
    assert newest == entries[:2:-1][:2] == [entries[4], entries[3]]
    older = await backend.list_audit(limit=2, before=newest[-1].entry_id)
    assert older == [entries[2], entries[1]]
    assert await backend.list_audit(limit=10, before=entries[0].entry_id) == []


# -- admin sessions ------------------------------------------------------------------


def session(name: str, *, expires: int = 3600) -> AdminSession:
    return AdminSession(
        session_id=f"{name:0<64}",
        username=name,
        role="admin",
        csrf_token=f"csrf-{name}",
        created_at=at(0),
        expires_at=at(expires),
    )


async def test_session_reads_back_until_it_expires(backend: TaskRepository) -> None:
    stored = session("alice")
    await backend.create_admin_session(stored)
    assert await backend.get_admin_session(stored.session_id, now=at(10)) == stored
    assert await backend.get_admin_session(stored.session_id, now=at(3600)) is None
    assert await backend.get_admin_session("0" * 64, now=at(10)) is None


async def test_revoked_session_is_gone_for_everyone(backend: TaskRepository) -> None:
    stored = session("alice")
    await backend.create_admin_session(stored)
    assert await backend.revoke_admin_session(stored.session_id, now=at(5))
    assert await backend.get_admin_session(stored.session_id, now=at(10)) is None
    assert not await backend.revoke_admin_session(stored.session_id, now=at(6))
    assert not await backend.revoke_admin_session("0" * 64, now=at(6))


async def test_purge_deletes_only_expired_sessions(backend: TaskRepository) -> None:
    expired, live = session("old", expires=100), session("new", expires=5000)
    await backend.create_admin_session(expired)
    await backend.create_admin_session(live)
    assert await backend.purge_admin_sessions(now=at(200)) == 1
    assert await backend.purge_admin_sessions(now=at(200)) == 0
    assert await backend.get_admin_session(live.session_id, now=at(200)) == live


# -- login throttle --------------------------------------------------------------------


async def test_attempts_are_ranked_per_user_and_per_client(backend: TaskRepository) -> None:
    first = await backend.begin_login_attempt(CLIENT, USER, now=at(1), since=WINDOW_START)
    second = await backend.begin_login_attempt(CLIENT, USER, now=at(2), since=WINDOW_START)
    other_user = await backend.begin_login_attempt(
        CLIENT, OTHER_USER, now=at(3), since=WINDOW_START
    )
    elsewhere = await backend.begin_login_attempt(OTHER_CLIENT, USER, now=at(4), since=WINDOW_START)
    assert (first.count, first.oldest, first.client_count) == (1, at(1), 1)
    assert (second.count, second.oldest, second.client_count) == (2, at(1), 2)
    assert (other_user.count, other_user.client_count, other_user.client_oldest) == (1, 3, at(1))
    assert (elsewhere.count, elsewhere.client_count) == (1, 1)
    assert len({first.attempt_id, second.attempt_id, other_user.attempt_id}) == 3


async def test_attempts_before_the_window_do_not_count(backend: TaskRepository) -> None:
    await backend.begin_login_attempt(CLIENT, USER, now=at(1), since=WINDOW_START)
    later = await backend.begin_login_attempt(CLIENT, USER, now=at(100), since=at(50))
    assert (later.count, later.oldest) == (1, at(100))


async def test_forgotten_attempt_no_longer_counts(backend: TaskRepository) -> None:
    refused = await backend.begin_login_attempt(CLIENT, USER, now=at(1), since=WINDOW_START)
    await backend.forget_login_attempt(refused.attempt_id)
    after = await backend.begin_login_attempt(CLIENT, USER, now=at(2), since=WINDOW_START)
    assert (after.count, after.oldest) == (1, at(2))


async def test_clear_forgives_only_that_user(backend: TaskRepository) -> None:
    for n in range(3):
        await backend.begin_login_attempt(CLIENT, USER, now=at(n), since=WINDOW_START)
    await backend.begin_login_attempt(CLIENT, OTHER_USER, now=at(5), since=WINDOW_START)
    await backend.clear_login_attempts(CLIENT, USER)
    on_user = await backend.begin_login_attempt(CLIENT, USER, now=at(6), since=WINDOW_START)
    on_other = await backend.begin_login_attempt(CLIENT, OTHER_USER, now=at(7), since=WINDOW_START)
    assert (on_user.count, on_other.count) == (1, 2)


async def test_purge_deletes_attempts_at_or_before(backend: TaskRepository) -> None:
    for n in (1, 2, 3):
        await backend.begin_login_attempt(CLIENT, USER, now=at(n), since=WINDOW_START)
    assert await backend.purge_login_attempts(before=at(2)) == 2
    left = await backend.begin_login_attempt(
        CLIENT, USER, now=at(4), since=at(0) - timedelta(days=1)
    )
    assert (left.count, left.oldest) == (2, at(3))
