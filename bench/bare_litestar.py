"""Anchor of the HTTP figures: a bare Litestar app answering a constant JSON, on the server settings of
`agentflow up` (services/launcher.py ``uvicorn_config``: one process, same loop and HTTP implementation),
loaded by wrk with the settings of the reads and commands benchmark. No API can be faster on this server,
so reads/s and commands/s are given as a share of it.

    .venv/bin/python -m bench.bare_litestar --port 8765     # serve it (the benchmark starts it itself)
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar, get

ROOT = Path(__file__).resolve().parents[1]
PATH = "/constant"
ANSWER = {"status": "ok", "value": 1}


@get(PATH, sync_to_thread=False)
def constant() -> dict[str, Any]:
    return ANSWER


def create_app() -> Litestar:
    return Litestar(route_handlers=[constant])


@contextlib.contextmanager
def serving(port: int, timeout: float = 30.0) -> Iterator[str]:
    """The bare app in its own process (as `agentflow up` serves in its own); yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_litestar", "--port", str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bare Litestar app exited with {proc.returncode}")
            try:
                if httpx.get(base + PATH, timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("bare Litestar app did not answer")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_bare_litestar(key: str, seconds: int) -> dict[str, Any]:
    """wrk against the bare app: the reads' script shape (GET with the API key header) on one path."""
    from bench.wrk_load import reads_script, run_wrk
    from connectors.postgres_cluster import free_port

    with serving(free_port()) as base:
        return run_wrk(base, reads_script(key, [PATH]), seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    from services.launcher import uvicorn_config

    uvicorn.Server(uvicorn_config(create_app(), "127.0.0.1", args.port)).run()


if __name__ == "__main__":
    main()
