"""HTTP load with wrk (Debian package): a separate native process, so the client is not the bottleneck."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  io.write(string.format('WRKJSON {"requests": %d, "seconds": %.3f, "errors": %d, '
    .. '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""

SESSION_COMMANDS = """
local key = "%(key)s"
request = function()
  local sid = "SES-wrk" .. tostring(math.random(1, 1000000000))
  return wrk.format("POST", "/v1/sessions/" .. sid .. "/events",
    {["X-API-Key"] = key, ["Content-Type"] = "application/json"},
    '{"type":"page_view","page_url":"/bench"}')
end
"""

READS = """
local key = "%(key)s"
local paths = {%(paths)s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], {["X-API-Key"] = key})
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    base: str, script: str, seconds: int = 10, connections: int = 32, threads: int = 2
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + _DONE)
        path = Path(f.name)
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(path), base],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        path.unlink(missing_ok=True)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    result["per_s"] = round(result["requests"] / result["seconds"], 1)
    result["connections"] = connections
    return result


def session_commands_script(key: str) -> str:
    return SESSION_COMMANDS % {"key": key}


def reads_script(key: str, paths: list[str]) -> str:
    return READS % {"key": key, "paths": ", ".join(json.dumps(p) for p in paths)}
