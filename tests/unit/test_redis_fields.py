"""The stored field names of a Redis task hash: one mapping, written into the Lua source."""

from __future__ import annotations

import pytest

from taskflow.repository.redis.fields import (
    DEFAULTS,
    LONG,
    STORED,
    STORED_BYTES,
    lua_tables,
    with_fields,
)


def test_the_mapping_is_one_to_one_and_never_reuses_a_long_name() -> None:
    assert len(set(STORED.values())) == len(STORED)
    assert {LONG[short] for short in STORED.values()} == set(STORED)
    # The upgrade tells a format-1 hash by its long names.
    assert not set(LONG) & set(STORED)
    assert set(DEFAULTS) <= set(STORED)
    assert all(STORED_BYTES[name] == STORED[name].encode() for name in STORED)


def test_the_lua_tables_hold_the_same_mapping() -> None:
    source = lua_tables()
    for long, short in STORED.items():
        assert f"['{long}'] = '{short}'" in source
        assert f"['{short}'] = '{long}'" in source
    for name, value in DEFAULTS.items():
        assert f"['{name}'] = '{value}'" in source


def test_field_references_in_lua_become_stored_names() -> None:
    lua = "redis.call('HMGET', key, $status, $func_name)"
    assert with_fields(lua) == "redis.call('HMGET', key, 's', 'f')"
    with pytest.raises(KeyError):
        with_fields("redis.call('HGET', key, $no_such_field)")
