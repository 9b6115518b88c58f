"""ssl-mode against the real MySQL/MariaDB server, through aiomysql and asyncmy.

The test server may run without TLS (``have_ssl`` DISABLED); it is not
reconfigured for this.  Then ``ssl-mode=REQUIRED`` must fail the start with
an error that says how to fix it: aiomysql would otherwise go on in plain
text, and asyncmy's handshake error looks like an outage.  With TLS on,
REQUIRED connects over TLS.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from taskflow import ConfigurationError, TaskManager

DRIVERS = pytest.mark.parametrize("backend_name", ["mysql", "mysql-asyncmy"])


def _with(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def _cipher_and_tls(manager: TaskManager) -> tuple[str, bool]:
    engine = manager.repository.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        cipher = (await conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'"))).one()[1]
        have = (await conn.execute(text("SHOW VARIABLES LIKE 'have_ssl'"))).one()[1]
    return str(cipher or ""), have == "YES"


@DRIVERS
async def test_required_tls_is_tls_or_a_clear_error(schema_db_url: str) -> None:
    probe = TaskManager(database_url=_with(schema_db_url, "ssl-mode=DISABLED"))
    await probe.startup()
    try:
        cipher, server_has_tls = await _cipher_and_tls(probe)
    finally:
        await probe.shutdown()
    assert cipher == ""  # DISABLED: plain text
    manager = TaskManager(database_url=_with(schema_db_url, "ssl-mode=REQUIRED"))
    if server_has_tls:
        await manager.startup()
        try:
            assert (await _cipher_and_tls(manager))[0]
        finally:
            await manager.shutdown()
        return
    with pytest.raises(ConfigurationError, match="does not offer TLS") as caught:
        await manager.startup()
    assert "ssl-mode=DISABLED" in str(caught.value)
    await manager.shutdown()
