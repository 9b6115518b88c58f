"""``create_router`` (the JSON task routes) under the module path fastapi-taskflow uses.

``TaskAdmin`` mounts these routes itself; this is for apps that build the
router by hand.  The implementation is ``taskflow.web.routes``.
"""

from __future__ import annotations

from taskflow.web.routes import create_router

__all__ = ["create_router"]
