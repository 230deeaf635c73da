"""``/v1/admin/keys``: API keys -- create, list, get, rotate, revoke (readmodels/api_keys.py, KeyAdmin).

Admin action on the caller's own tenant's keys (another tenant's key: 404); an ``operator`` key acts on
every tenant's. The key text (``secret``) is answered once, by the create or rotate that made it; lists
and gets carry its public prefix only. A revoked key stops working within a second on every process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from readmodels.api_keys import (
    InvalidKeyRequest,
    IssuedKey,
    KeyAdmin,
    KeyConflict,
    KeyForbidden,
    KeyNotFound,
    KeyRecord,
    Principal,
)
from services.api.blocking import in_thread
from services.api.dependencies import ADMIN
from services.api.errors import ApiError
from services.api.openapi import errors

KeyId = Annotated[str, PathParameter(description="a key's id (key_...)")]
Scope = Literal["read", "write", "admin", "operator"]


class KeyCreate(msgspec.Struct):
    name: str
    scopes: list[Scope] | None = None  # default ["read"]
    # default the caller's; another one: operator keys only. (Not "tenant": a body field named like an
    # app dependency turns Litestar's validation error into a 500.)
    tenant_id: str | None = None
    expires_at: datetime | None = None
    expires_in_seconds: float | None = None


class KeyRotate(msgspec.Struct):
    grace_seconds: float | None = None  # how long the old key keeps working (default: the server's)


class ApiKeyView(msgspec.Struct):
    id: str
    tenant_id: str
    name: str
    prefix: str  # af_<prefix>_: how the key text starts
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: str
    created_by: str | None
    expires_at: str | None
    revoked_at: str | None
    rotated_to: str | None  # the key that replaced this one


class ApiKeyList(msgspec.Struct):
    keys: list[ApiKeyView]


class ApiKeyIssued(msgspec.Struct):
    key: ApiKeyView
    secret: str  # the key text for X-API-Key: shown here once, never again
    previous: ApiKeyView | None = None  # rotation: the old key, valid until its expires_at


def _view(admin: KeyAdmin, record: KeyRecord) -> ApiKeyView:
    return msgspec.convert(record.public(admin.now()), ApiKeyView)


def _issued(admin: KeyAdmin, issued: IssuedKey) -> ApiKeyIssued:
    previous = _view(admin, issued.previous) if issued.previous is not None else None
    return ApiKeyIssued(_view(admin, issued.record), issued.secret, previous)


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except KeyNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except KeyForbidden as exc:
        raise ApiError(403, exc.code, exc.message) from exc
    except KeyConflict as exc:
        raise ApiError(409, exc.code, exc.message) from exc
    except InvalidKeyRequest as exc:
        raise ApiError(422, "invalid_key_request", str(exc)) from exc


@post("/v1/admin/keys", opt=ADMIN, status_code=201, responses=errors(401, 403, 413, 422))
@in_thread
def create_key(
    principal: NamedDependency[Principal], key_admin: NamedDependency[KeyAdmin], data: JSONBody[KeyCreate]
) -> ApiKeyIssued:
    """A new key of the caller's tenant (an operator: of ``tenant_id``) with at most the caller's scopes.
    201 with ``secret``, the key text: shown only here."""
    with _refusals():
        issued = key_admin.create(
            principal, data.name, data.scopes, data.tenant_id, data.expires_at, data.expires_in_seconds
        )
    return _issued(key_admin, issued)


@get("/v1/admin/keys", opt=ADMIN, responses=errors(401, 403, 422))
@in_thread
def list_keys(
    principal: NamedDependency[Principal],
    key_admin: NamedDependency[KeyAdmin],
    of_tenant: Annotated[
        str | None,
        QueryParameter(name="tenant_id", description="operator keys: one tenant's keys (default: all)"),
    ] = None,
) -> ApiKeyList:
    """The caller's tenant's stored keys (revoked and expired ones too), oldest first. Keys of the
    environment (AGENTFLOW_API_KEYS, the development key) are not stored and not listed."""
    with _refusals():
        found = key_admin.list(principal, of_tenant)
    return ApiKeyList([_view(key_admin, r) for r in found])


@get("/v1/admin/keys/{key_id:str}", opt=ADMIN, responses=errors(401, 403, 404))
@in_thread
def get_key(
    principal: NamedDependency[Principal], key_admin: NamedDependency[KeyAdmin], key_id: KeyId
) -> ApiKeyView:
    with _refusals():
        return _view(key_admin, key_admin.get(principal, key_id))


@post(
    "/v1/admin/keys/{key_id:str}/rotate", opt=ADMIN, status_code=201,
    responses=errors(401, 403, 404, 409, 413, 422),
)  # fmt: skip
@in_thread
def rotate_key(
    principal: NamedDependency[Principal],
    key_admin: NamedDependency[KeyAdmin],
    key_id: KeyId,
    data: JSONBody[KeyRotate | None] = None,
) -> ApiKeyIssued:
    """A new key (new id and secret, same tenant, name, scopes and expiry); the old one keeps working
    for ``grace_seconds`` and then expires. 409 for a revoked, expired or already rotated key."""
    with _refusals():
        issued = key_admin.rotate(principal, key_id, data.grace_seconds if data else None)
    return _issued(key_admin, issued)


@delete("/v1/admin/keys/{key_id:str}", opt=ADMIN, status_code=200, responses=errors(401, 403, 404))
@in_thread
def revoke_key(
    principal: NamedDependency[Principal], key_admin: NamedDependency[KeyAdmin], key_id: KeyId
) -> ApiKeyView:
    """Revoke: refused within a second on every API process; the key stays listed as ``revoked``."""
    with _refusals():
        return _view(key_admin, key_admin.revoke(principal, key_id))


KEY_ROUTES = [create_key, list_keys, get_key, rotate_key, revoke_key]
