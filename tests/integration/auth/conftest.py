"""The ``site`` fixture of the auth tests: one started app with the admin and its logins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.auth.login_site import Admin, running_admin


@pytest.fixture
async def site(database_url: str) -> AsyncIterator[Admin]:
    async with running_admin(database_url) as admin:
        yield admin
