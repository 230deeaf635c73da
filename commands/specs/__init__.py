"""Every command the API and the legacy ingestor can execute, by name (``<aggregate>.<action>``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from commands.specs.base import CommandSpec
from commands.specs.orders import ORDER_COMMANDS
from commands.specs.payments import PAYMENT_COMMANDS
from commands.specs.products import PRODUCT_COMMANDS
from commands.specs.sessions import SESSION_COMMANDS
from commands.specs.users import USER_COMMANDS

SPECS: Mapping[str, CommandSpec] = MappingProxyType({
    **PRODUCT_COMMANDS, **USER_COMMANDS, **ORDER_COMMANDS, **PAYMENT_COMMANDS, **SESSION_COMMANDS,
})

__all__ = ["SPECS", "CommandSpec"]
