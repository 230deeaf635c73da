"""User aggregate: registration only (order stats are a read model)."""

from __future__ import annotations

from typing import Any

from domain import errors
from domain.base import Aggregate, EventLike, make_event
from domain.errors import DomainError
from domain.events import USER, NewEvent


class User(Aggregate):
    stream_type = USER

    def __init__(self) -> None:
        super().__init__()
        self.user_id = ""
        self.name: str | None = None
        self.email: str | None = None
        self.region: str | None = None

    def _on_UserRegistered(self, d: dict[str, Any], _e: EventLike) -> None:
        self.exists = True
        self.user_id = d["user_id"]
        self.name = d["name"]
        self.email = d["email"]
        self.region = d["region"]

    def decide_register(
        self, user_id: str, name: str | None, email: str | None, region: str | None
    ) -> list[NewEvent]:
        if self.exists:
            raise DomainError(errors.ALREADY_EXISTS, f"user {user_id} already exists", {"user_id": user_id})
        data = {"user_id": user_id, "name": name, "email": email, "region": region}
        return [make_event("UserRegistered", user_id, data)]
