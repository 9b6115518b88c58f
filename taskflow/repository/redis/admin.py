"""``AdminRecords`` on Redis: the audit log, dashboard sessions and the login throttle.

These records must read the same for every instance of a deployment, as the
SQL tables do, so they live in the deployment's Redis next to the tasks.
Every change that depends on what is stored (an id to hand out, a session
not yet revoked, the attempts to rank) is one Lua script, so two instances
never interleave inside one.

No key is given a Redis expiry: the methods take ``now`` from the caller and
the purges report how many records they deleted, and an expiry on the server's
clock would make both differ from the SQL backend (a session past a wall-clock
expiry would vanish before a purge could count it).  The purges, which the
web layer already runs, keep these keys small instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from taskflow.models import AuditEntry
from taskflow.repository.admin import AdminRecords
from taskflow.repository.redis.codec import from_us, to_us
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua_script import LuaScript
from taskflow.repository.values import AdminSession, LoginAttempts

# Hex characters of the client's digest and of the user's (web.throttle).
KEY_PART = 32
# Records one purge script deletes: bounds how long Redis is blocked per call.
PURGE_CHUNK = 500

# An audit entry is a member ``<id>:<json>`` of a sorted set scored by its id:
# the id makes equal entries distinct members, and the score pages them.
_APPEND_AUDIT = LuaScript("""
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, id .. ':' .. ARGV[1])
return id
""")

# ARGV: expires_at, session id, then the hash's field/value pairs.
_CREATE_SESSION = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
""")

_REVOKE_SESSION = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1]) == 0 then return 0 end
return 1
""")

# KEYS: the expiry index; ARGV: now, chunk size, the session hashes' key prefix.
_PURGE_SESSIONS = LuaScript("""
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[3] .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
""")

# KEYS: id counter, pair set, client set, all attempts, id -> pair hash.
# ARGV: now, since, client..user.  Every attempt already stored has a lower
# id than this one, so counting the sets after ``since`` is the SQL's rank.
_BEGIN_ATTEMPT = LuaScript("""
local id = redis.call('INCR', KEYS[1])
for i = 2, 4 do redis.call('ZADD', KEYS[i], ARGV[1], id) end
redis.call('HSET', KEYS[5], id, ARGV[3])
local after = '(' .. ARGV[2]
local function rank(key)
  local first = redis.call('ZRANGE', key, after, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
  return {redis.call('ZCOUNT', key, after, '+inf'), first[2] or false}
end
local pair, client = rank(KEYS[2]), rank(KEYS[3])
return {id, pair[1], pair[2], client[1], client[2]}
""")

# Removes the attempts listed by id; a helper of the scripts below.
# ARGV of every caller starts with: pair set prefix, client set prefix.
_DROP_ATTEMPTS = f"""
local function drop(ids, all, of)
  for _, id in ipairs(ids) do
    local pair = redis.call('HGET', of, id)
    if pair then
      redis.call('ZREM', ARGV[1] .. pair, id)
      redis.call('ZREM', ARGV[2] .. string.sub(pair, 1, {KEY_PART}), id)
      redis.call('HDEL', of, id)
    end
    redis.call('ZREM', all, id)
  end
  return #ids
end
"""

# KEYS: all attempts, id -> pair hash; ARGV: prefixes, attempt id.
_FORGET_ATTEMPT = LuaScript(_DROP_ATTEMPTS + "return drop({ARGV[3]}, KEYS[1], KEYS[2])")

# KEYS: all attempts, id -> pair hash, the pair's set; ARGV: prefixes.
_CLEAR_ATTEMPTS = LuaScript(
    _DROP_ATTEMPTS + "return drop(redis.call('ZRANGE', KEYS[3], 0, -1), KEYS[1], KEYS[2])"
)

# KEYS: all attempts, id -> pair hash; ARGV: prefixes, before, chunk size.
_PURGE_ATTEMPTS = LuaScript(
    _DROP_ATTEMPTS
    + "return drop(redis.call('ZRANGE', KEYS[1], '-inf', ARGV[3], 'BYSCORE', 'LIMIT', 0, ARGV[4]),"
    + " KEYS[1], KEYS[2])"
)


def _score_instant(score: bytes) -> datetime:
    # A score as Lua returns it: text, which Redis may write in exponent form.
    return from_us(int(float(score)))


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _pair(client: str, user: str) -> str:
    if len(client) != KEY_PART or len(user) != KEY_PART:
        raise ValueError(f"client and user are digests of {KEY_PART} hex characters")
    return client + user


class RedisAdminRecords(AdminRecords):
    """The ``AdminRecords`` methods of ``RedisTaskRepository`` but ``list_live_instances``."""

    # Set by RedisTaskRepository.__init__.
    client: RedisClient
    keys: KeySpace

    # -- audit log -------------------------------------------------------------------

    async def insert_audit(
        self,
        action: str,
        *,
        actor: str,
        task_id: str | None,
        detail: dict[str, Any] | None,
        now: datetime,
    ) -> AuditEntry:
        payload = json.dumps(
            {
                "action": action,
                "task_id": task_id,
                "actor": actor,
                "at": to_us(now),
                "detail": detail or None,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        entry_id = await _APPEND_AUDIT(
            self.client,
            keys=[self.keys.key("audit", "seq"), self.keys.key("audit", "log")],
            args=[payload.encode("utf-8")],
        )
        return AuditEntry(int(entry_id), action, task_id, actor, now, dict(detail or {}))

    async def list_audit(self, *, limit: int, before: int | None = None) -> list[AuditEntry]:
        if limit <= 0:
            return []
        newest = "+inf" if before is None else f"({before}"
        found = await self.client.zrange(
            self.keys.key("audit", "log"),
            newest,
            "-inf",
            desc=True,
            byscore=True,
            offset=0,
            num=limit,
        )
        members = cast("list[bytes]", found)  # decode_responses=False: members are bytes
        entries = []
        for member in members:
            entry_id, _, payload = member.partition(b":")
            fields = json.loads(_text(payload))
            entries.append(
                AuditEntry(
                    entry_id=int(entry_id),
                    action=fields["action"],
                    task_id=fields["task_id"],
                    actor=fields["actor"],
                    timestamp=from_us(fields["at"]),
                    detail=dict(fields["detail"] or {}),
                )
            )
        return entries

    # -- admin sessions --------------------------------------------------------------

    def _admin_session_key(self, session_id: str) -> str:
        return self.keys.key("admin_session", session_id)

    async def create_admin_session(self, session: AdminSession) -> None:
        fields: list[Any] = [
            "username",
            session.username,
            "role",
            session.role,
            "csrf_token",
            session.csrf_token,
            "created_at",
            to_us(session.created_at),
            "expires_at",
            to_us(session.expires_at),
        ]
        if session.revoked_at is not None:
            fields += ["revoked_at", to_us(session.revoked_at)]
        created = await _CREATE_SESSION(
            self.client,
            keys=[self._admin_session_key(session.session_id), self.keys.key("admin_sessions")],
            args=[to_us(session.expires_at), session.session_id, *fields],
        )
        if not created:
            # The SQL backend's primary key refuses a second row with the id too.
            raise ValueError(f"admin session {session.session_id!r} already exists")

    async def get_admin_session(self, session_id: str, *, now: datetime) -> AdminSession | None:
        found = await self.client.hgetall(self._admin_session_key(session_id))
        row = cast("dict[bytes, bytes]", found)
        if not row or b"revoked_at" in row:
            return None
        expires_at = from_us(row[b"expires_at"])
        if expires_at <= now:
            return None
        return AdminSession(
            session_id=session_id,
            username=_text(row[b"username"]),
            role=_text(row[b"role"]),
            csrf_token=_text(row[b"csrf_token"]),
            created_at=from_us(row[b"created_at"]),
            expires_at=expires_at,
        )

    async def revoke_admin_session(self, session_id: str, *, now: datetime) -> bool:
        revoked = await _REVOKE_SESSION(
            self.client, keys=[self._admin_session_key(session_id)], args=[to_us(now)]
        )
        return bool(revoked)

    async def purge_admin_sessions(self, *, now: datetime) -> int:
        # Chunks, each atomic: a session expired by ``now`` stays expired.
        purged = 0
        while True:
            deleted = int(
                await _PURGE_SESSIONS(
                    self.client,
                    keys=[self.keys.key("admin_sessions")],
                    args=[to_us(now), PURGE_CHUNK, self._admin_session_key("")],
                )
            )
            purged += deleted
            if deleted < PURGE_CHUNK:
                return purged

    # -- login throttle --------------------------------------------------------------

    def _login_prefixes(self) -> list[str]:
        return [self.keys.key("login", "pair", ""), self.keys.key("login", "client", "")]

    def _login_keys(self) -> list[str]:
        return [self.keys.key("login", "all"), self.keys.key("login", "of")]

    async def begin_login_attempt(
        self, client: str, user: str, *, now: datetime, since: datetime
    ) -> LoginAttempts:
        pair = _pair(client, user)
        attempt_id, count, oldest, client_count, client_oldest = await _BEGIN_ATTEMPT(
            self.client,
            keys=[
                self.keys.key("login", "seq"),
                self.keys.key("login", "pair", pair),
                self.keys.key("login", "client", client),
                *self._login_keys(),
            ],
            args=[to_us(now), to_us(since), pair],
        )
        return LoginAttempts(
            attempt_id=int(attempt_id),
            count=int(count),
            oldest=None if oldest is None else _score_instant(oldest),
            client_count=int(client_count),
            client_oldest=None if client_oldest is None else _score_instant(client_oldest),
        )

    async def forget_login_attempt(self, attempt_id: int) -> None:
        await _FORGET_ATTEMPT(
            self.client, keys=self._login_keys(), args=[*self._login_prefixes(), int(attempt_id)]
        )

    async def clear_login_attempts(self, client: str, user: str) -> None:
        pair_set = self.keys.key("login", "pair", _pair(client, user))
        await _CLEAR_ATTEMPTS(
            self.client, keys=[*self._login_keys(), pair_set], args=self._login_prefixes()
        )

    async def purge_login_attempts(self, *, before: datetime) -> int:
        purged = 0
        while True:
            deleted = int(
                await _PURGE_ATTEMPTS(
                    self.client,
                    keys=self._login_keys(),
                    args=[*self._login_prefixes(), to_us(before), PURGE_CHUNK],
                )
            )
            purged += deleted
            if deleted < PURGE_CHUNK:
                return purged
