"""``/v1/whoami``: the caller as the API sees it -- its tenant and its key's scopes (a client such as
``agentflow mcp`` offers the commands only to a key with ``write``)."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from readmodels.api_keys import Principal
from services.api.dependencies import READ
from services.api.openapi import errors


class WhoAmI(msgspec.Struct):
    tenant: str
    scopes: list[str]  # the key's scopes, sorted (read, write, admin, operator)
    grants: list[str]  # what they allow: the scopes, and admin for an operator
    key_id: str | None  # None: a key of the environment (AGENTFLOW_API_KEYS, the development key)
    name: str
    expires_at: float | None  # unix seconds


@get("/v1/whoami", opt=READ, responses=errors(401, 429), sync_to_thread=False)
def whoami(principal: NamedDependency[Principal]) -> WhoAmI:
    """The calling key's tenant and scopes (no secret)."""
    return WhoAmI(principal.tenant, sorted(principal.scopes), sorted(principal.grants), principal.key_id,
                  principal.name, principal.expires_at)  # fmt: skip


WHOAMI_ROUTES = [whoami]
