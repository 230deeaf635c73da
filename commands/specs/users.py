"""User commands: register."""

from __future__ import annotations

from typing import Any

from commands.specs.base import Aggregates, CommandSpec, NewId, Prepared
from commands.validation import Fields
from domain import ids
from domain.events import NewEvent
from domain.user import User

MAX_EMAIL = 254
MAX_REGION = 100


def _prep_register(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    user_id = f.ident("user_id", required=False)
    name = f.text("name", required=False)
    email = f.text("email", required=False, max_len=MAX_EMAIL)
    if email is not None and ("@" not in email or " " in email):
        f.error("email", "must be an email address")
    region = f.text("region", required=False, max_len=MAX_REGION)
    f.raise_if_invalid()
    return Prepared(user_id or new_id(ids.USER_KIND), {"name": name, "email": email, "region": region})


def _register(agg: Aggregates, uid: str, a: dict[str, Any]) -> list[NewEvent]:
    return agg.load(User, uid).decide_register(uid, a["name"], a["email"], a["region"])


USER_COMMANDS: dict[str, CommandSpec] = {
    "user.register": CommandSpec(User, True, _prep_register, _register),
}
