"""Command side: ``execute(ctx, name, entity_id, payload)`` validates, decides and appends."""

from commands.bus import COMMAND_ENTITY_TYPES, COMMAND_NAMES, CommandContext, CommandResult, execute
from commands.cache import AggregateCache
from commands.validation import InvalidCommand
from domain.errors import DomainError, NotFound

__all__ = [
    "COMMAND_ENTITY_TYPES",
    "COMMAND_NAMES",
    "AggregateCache",
    "CommandContext",
    "CommandResult",
    "DomainError",
    "InvalidCommand",
    "NotFound",
    "execute",
]
