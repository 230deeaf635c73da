"""Legacy CDC sources: one YAML file per legacy database (``connectors/sources/*.yaml``).

A source names the database to capture, the tables and the translator each one feeds, and how its
rows find their tenant. Tenant resolution is explicit: exactly one of ``tenant`` (every row belongs to
it) or ``tenant_column`` + ``tenants`` (a column value -> tenant map) must be given; a spec with both
or neither is rejected, and a row whose value is not in the map is dead-lettered, never defaulted.

The database host is an outbound destination like a webhook URL (connectors/ssrf.py): ``check_host``
refuses loopback, private, link-local, multicast and reserved hosts -- IP literals in any spelling, and
names resolving there -- unless the operator allows loopback and private ones
(``AGENTFLOW_LEGACY_ALLOW_PRIVATE=1``). ``parse_source`` only checks the host's syntax (it resolves
nothing); services/legacy_sources.py runs ``check_host`` when a source is declared and again before its
capture starts, its connector is registered or its replication slot is dropped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors import ssrf

KINDS = ("postgres", "mariadb", "mysql")
TRANSLATORS = ("orders", "payments", "products", "inventory")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*")


class SourceSpecError(ValueError):
    """A source declaration is invalid; the message names the field."""


@dataclass(frozen=True)
class Connection:
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False, default="")

    def redacted(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "database": self.database, "user": self.user}


@dataclass(frozen=True)
class TableSpec:
    """One captured table: ``name`` is ``schema.table`` (Postgres) or ``database.table`` (MySQL/MariaDB)."""

    name: str
    translator: str
    # translator field -> legacy column, for tables whose columns are named differently
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass(frozen=True)
class SourceSpec:
    name: str
    kind: str
    connection: Connection
    tables: tuple[TableSpec, ...]
    tenant: str | None = None
    tenant_column: str | None = None
    tenants: dict[str, str] = field(default_factory=dict)
    # entity ids become f"{id_prefix}{ORD|PAY|PROD|USR}-{legacy id}" (default prefix: the upper-case
    # name and a dash), keeping two sources of one tenant apart
    id_prefix: str = ""
    # numeric MySQL server id of the capturing client (must be unique among the server's replicas)
    server_id: int = 0

    @property
    def connector(self) -> str:
        """The Debezium connector family that captures this source."""
        return "postgresql" if self.kind == "postgres" else self.kind

    def table(self, schema: str, table: str) -> TableSpec | None:
        for spec in self.tables:
            if spec.schema == schema and spec.table == table:
                return spec
        return None

    def resolve_tenant(self, row: dict[str, Any] | None) -> str | None:
        """The tenant of a row image, or None when its tenant column value is not mapped."""
        if self.tenant is not None:
            return self.tenant
        if row is None or self.tenant_column is None:
            return None
        value = row.get(self.tenant_column)
        return self.tenants.get(str(value)) if value is not None else None

    def public(self) -> dict[str, Any]:
        """The spec without secrets (for ``sources list`` and the API)."""
        out: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "connection": self.connection.redacted(),
            "tables": [
                {"table": t.name, "translator": t.translator, **({"columns": t.columns} if t.columns else {})}
                for t in self.tables
            ],
            "id_prefix": self.id_prefix,
        }
        if self.tenant is not None:
            out["tenant"] = self.tenant
        else:
            out["tenant_column"] = self.tenant_column
            out["tenants"] = dict(self.tenants)
        return out


def _require(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = raw.get(key)
    if value is None:
        raise SourceSpecError(f"{where}{key} is required")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SourceSpecError(f"{where}{key} must be a {kind.__name__}")
    return value


def _connection(raw: Any, env: dict[str, str]) -> Connection:
    if not isinstance(raw, dict):
        raise SourceSpecError("connection must be a mapping")
    password = raw.get("password")
    password_env = raw.get("password_env")
    if password is not None and password_env is not None:
        raise SourceSpecError("connection: give password or password_env, not both")
    if password_env is not None:
        if password_env not in env:
            raise SourceSpecError(f"connection.password_env: environment variable {password_env} is not set")
        password = env[password_env]
    host = _require(raw, "host", str, "connection.")
    if not host or re.search(r"[\s/@?#]", host):
        raise SourceSpecError("connection.host must be a host name or an IP address (not a URL)")
    return Connection(
        host=host,
        port=_require(raw, "port", int, "connection."),
        database=_require(raw, "database", str, "connection."),
        user=_require(raw, "user", str, "connection."),
        password=str(password or ""),
    )


def _tables(raw: Any) -> tuple[TableSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise SourceSpecError("tables must be a non-empty list of {table, translator}")
    out: list[TableSpec] = []
    for i, item in enumerate(raw):
        where = f"tables[{i}]."
        if not isinstance(item, dict):
            raise SourceSpecError(f"tables[{i}] must be a mapping")
        name = _require(item, "table", str, where)
        if not _TABLE.fullmatch(name):
            raise SourceSpecError(f"{where}table must be schema.table (Postgres) or database.table (MySQL)")
        translator = _require(item, "translator", str, where)
        if translator not in TRANSLATORS:
            raise SourceSpecError(f"{where}translator must be one of {', '.join(TRANSLATORS)}")
        columns = item.get("columns") or {}
        if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
            raise SourceSpecError(f"{where}columns must map translator fields to column names")
        if any(t.name == name for t in out):
            raise SourceSpecError(f"{where}table {name} is listed twice")
        out.append(TableSpec(name, translator, {str(k): v for k, v in columns.items()}))
    return tuple(out)


def parse_source(raw: Any, env: dict[str, str] | None = None) -> SourceSpec:
    """Validate a source declaration (the parsed YAML); raises SourceSpecError naming the field."""
    env = dict(os.environ) if env is None else env
    if not isinstance(raw, dict):
        raise SourceSpecError("a source must be a mapping")
    name = _require(raw, "name", str, "")
    if not _NAME.fullmatch(name):
        raise SourceSpecError("name must be 1-31 characters of a-z 0-9 _ starting with a letter")
    kind = _require(raw, "kind", str, "")
    if kind not in KINDS:
        raise SourceSpecError(f"kind must be one of {', '.join(KINDS)}")
    tenant = raw.get("tenant")
    tenant_column = raw.get("tenant_column")
    tenants = raw.get("tenants") or {}
    if tenant is not None and tenant_column is not None:
        raise SourceSpecError("tenant is ambiguous: give tenant or tenant_column, not both")
    if tenant is None and tenant_column is None:
        raise SourceSpecError("tenant is required (or tenant_column with a tenants map); there is no default")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise SourceSpecError("tenant must be a non-empty string")
    if tenant_column is not None:
        if not isinstance(tenants, dict) or not tenants:
            raise SourceSpecError("tenant_column needs a non-empty tenants map (column value -> tenant)")
        tenants = {str(k): str(v) for k, v in tenants.items()}
    id_prefix = raw.get("id_prefix", name.upper() + "-")
    if not isinstance(id_prefix, str) or not re.fullmatch(r"[A-Za-z0-9._:-]{0,20}", id_prefix):
        raise SourceSpecError("id_prefix must be at most 20 characters of A-Z a-z 0-9 . _ : -")
    server_id = raw.get("server_id", 0)
    if not isinstance(server_id, int) or server_id < 0:
        raise SourceSpecError("server_id must be a non-negative integer")
    if not server_id:
        # stable per name, far from the small ids servers and replicas usually take
        server_id = 5400 + sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 100_000
    return SourceSpec(
        name=name, kind=kind, connection=_connection(raw.get("connection"), env),
        tables=_tables(raw.get("tables")),
        tenant=tenant, tenant_column=tenant_column, tenants=dict(tenants) if tenant_column else {},
        id_prefix=id_prefix, server_id=server_id,
    )


def check_host(spec: SourceSpec, allow_private: bool, resolver: ssrf.Resolver | None = None) -> list[str]:
    """The addresses the source's database host resolves to, every one an allowed destination;
    SourceSpecError (naming ``connection.host``) otherwise. Resolves the host (``resolver``: tests')."""
    c = spec.connection
    try:
        return ssrf.check_host(c.host, c.port, allow_private, resolver, ssrf.LEGACY_OPT_IN)
    except ssrf.BlockedDestination as exc:
        raise SourceSpecError(f"connection.host: {exc}") from None


def load_source(path: str | Path, env: dict[str, str] | None = None) -> SourceSpec:
    text = Path(path).read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SourceSpecError(f"{path}: not valid YAML: {e}") from None
    try:
        return parse_source(raw, env)
    except SourceSpecError as e:
        raise SourceSpecError(f"{path}: {e}") from None

