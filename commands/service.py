"""The write-side use case behind every command endpoint: run one command, remember a rejected one.

``CommandService.submit`` runs ``commands.execute`` (validate, load, decide, append) with the caller's
optimistic-concurrency version (If-Match) and Idempotency-Key. A command the domain refuses — invalid
input (InvalidCommand), a business rule (DomainError) or a version conflict — is recorded in the
store's rejection log (it feeds error_rate; nothing is appended) and ``on_rejected(tenant)`` tells the
read side, then the error propagates for the caller to answer. An unknown entity (NotFound) and a
reused Idempotency-Key (IdempotencyKeyReused) are not rejections of a command and are not recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commands.bus import CommandContext, CommandResult, execute
from commands.cache import AggregateCache
from commands.idempotency import IdempotencyClaim, request_hash
from commands.ports import EventStorePort, VersionConflict
from commands.validation import InvalidCommand
from domain.errors import DomainError

MAX_IDEMPOTENCY_KEY = 255


class InvalidIdempotencyKey(ValueError):
    pass


def _ignore(tenant_id: str) -> None:
    return None


class CommandService:
    def __init__(
        self, store: EventStorePort, cache: AggregateCache, on_rejected: Callable[[str], None] = _ignore
    ) -> None:
        self.store = store
        self.cache = cache
        self.on_rejected = on_rejected

    def submit(
        self,
        tenant_id: str,
        name: str,
        entity_id: str | None,
        payload: dict[str, Any],
        metadata: dict[str, Any],
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Blocking (database): run it in a worker thread. Raises InvalidCommand, DomainError,
        VersionConflict (all recorded as rejections), NotFound, IdempotencyKeyReused or
        InvalidIdempotencyKey."""
        metadata = dict(metadata)
        claim = None
        if idempotency_key:
            if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
                raise InvalidIdempotencyKey(
                    f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters"
                )
            metadata["idempotency_key"] = idempotency_key
            claim = IdempotencyClaim(idempotency_key, request_hash(name, entity_id, payload))
        ctx = CommandContext(
            tenant_id=tenant_id,
            store=self.store,
            metadata=metadata,
            cache=self.cache,
            if_match=if_match,
            optimistic=True,
            idempotency=claim,
        )
        try:
            return execute(ctx, name, entity_id, payload)
        except InvalidCommand as exc:
            self.reject(tenant_id, name, "validation_failed", {"errors": exc.errors})
            raise
        except DomainError as exc:
            self.reject(tenant_id, name, exc.code, exc.details or {})
            raise
        except VersionConflict as exc:
            self.reject(tenant_id, name, "version_conflict", {"current_version": exc.actual})
            raise

    def reject(self, tenant_id: str, name: str, code: str, detail: dict[str, Any]) -> None:
        """Record a refused command (never an event) and tell the read side."""
        self.store.record_rejection(tenant_id, name, code, detail)
        self.on_rejected(tenant_id)
