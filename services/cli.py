"""The ``agentflow`` command."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from services.config import settings_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentflow", description="Event-native metrics layer")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Postgres, the API and the projectors on this machine")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", type=Path, default=None, help="default: $AGENTFLOW_DATA_DIR or .agentflow")
    up.add_argument("--demo", action="store_true", help="also run a realistic traffic generator")
    up.add_argument("--demo-rate", type=float, default=10.0, help="demo commands per second")
    up.add_argument("--no-iceberg", action="store_true", help="do not write the Iceberg lake")
    up.add_argument(
        "--distributed",
        action="store_true",
        help="project through Debezium -> Kafka -> Flink (starts them under the data dir unless --external)",
    )
    up.add_argument(
        "--external",
        action="store_true",
        help="with --distributed: use the Kafka (and Connect) named by AGENTFLOW_KAFKA_BOOTSTRAP_SERVERS "
        "(and AGENTFLOW_CONNECT_URL) instead of starting them",
    )
    up.add_argument("--database-url", default=None, help="an existing Postgres (default: own cluster)")
    up.add_argument("--kafka-bootstrap", default=None, help="with --external: Kafka bootstrap servers")

    down = sub.add_parser("down", help="stop a running `agentflow up` (and the engines it started)")
    down.add_argument(
        "--data-dir", type=Path, default=None, help="default: $AGENTFLOW_DATA_DIR or .agentflow"
    )

    restart = sub.add_parser(
        "restart", help="restart one engine of a running `agentflow up --distributed` (kafka, connect, flink)"
    )
    restart.add_argument("engine", choices=("kafka", "connect", "flink"))
    restart.add_argument(
        "--data-dir", type=Path, default=None, help="default: $AGENTFLOW_DATA_DIR or .agentflow"
    )

    mig = sub.add_parser("migrate", help="apply database migrations to AGENTFLOW_DATABASE_URL")
    mig.add_argument("--database-url", default=None)

    from services.webhooks.cli import add_worker_command

    add_worker_command(sub)

    from services.projections_cli import add_projections_command

    add_projections_command(sub)

    from services.sources_cli import add_sources_command

    add_sources_command(sub)

    from services.keys_cli import add_keys_command

    add_keys_command(sub)

    from services.secrets_cli import add_secrets_command

    add_secrets_command(sub)

    from services.query_cli import add_query_commands

    add_query_commands(sub)

    from services.mcp.cli import add_mcp_command

    add_mcp_command(sub)

    from services.lake_cli import add_lake_command

    add_lake_command(sub)

    args = parser.parse_args(argv)
    from services.logs import configure_logging

    try:
        env_settings = settings_from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if argv is None:  # this process's own command line: set up its logs and traces (not for in-process calls)
        configure_logging(env_settings.log_level)
        from services.tracing_setup import install_tracing

        install_tracing()  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    if args.command == "up":
        from services.launcher import run_up

        overrides: dict[str, Any] = {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "database_url": args.database_url,
            "kafka_bootstrap": args.kafka_bootstrap,
        }
        if args.no_iceberg:
            overrides["iceberg_enabled"] = False
        if args.distributed:
            overrides["deployment"] = "distributed"
        settings = env_settings.with_(**overrides)
        if args.external and not (args.distributed and settings.kafka_bootstrap):
            print(
                "error: --external needs --distributed and AGENTFLOW_KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr
            )
            return 2
        if args.distributed and not args.external and settings.kafka_bootstrap:
            settings = dataclasses.replace(settings, kafka_bootstrap=None)  # start our own stack
        return run_up(settings, demo=args.demo, demo_rate=args.demo_rate)
    from services.query_cli import QUERY_COMMANDS

    if args.command in QUERY_COMMANDS:
        from services.query_cli import run_query_command

        return run_query_command(args)
    if args.command == "mcp":
        from services.mcp.cli import run_mcp_command

        return run_mcp_command(args)
    if args.command == "lake":
        from services.lake_cli import run_lake_command

        return run_lake_command(args, env_settings)
    if args.command == "worker":
        from services.webhooks.cli import run_worker_command

        return run_worker_command(args, env_settings)
    if args.command == "projections":
        from services.projections_cli import run_projections_command

        return run_projections_command(args)
    if args.command == "sources":
        from services.sources_cli import run_sources_command

        return run_sources_command(args)
    if args.command == "keys":
        from services.keys_cli import run_keys_command

        return run_keys_command(args)

    if args.command == "secrets":
        from services.secrets_cli import run_secrets_command

        return run_secrets_command(args)
    if args.command == "down":
        from services.launcher import run_down

        return run_down(args.data_dir or env_settings.data_dir)
    if args.command == "restart":
        from services.launcher import run_restart

        return run_restart(args.data_dir or env_settings.data_dir, args.engine)
    if args.command == "migrate":
        from migrations import run_migrations

        url = args.database_url or env_settings.database_url
        if not url:
            print("error: pass --database-url or set AGENTFLOW_DATABASE_URL", file=sys.stderr)
            return 2
        run_migrations(url)
        print("migrations applied")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
