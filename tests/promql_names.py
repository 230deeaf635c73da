"""The PromQL of deploy/prometheus/rules.yml and deploy/grafana/agentflow.json, and which AgentFlow metric
series (with which label names) it selects -- to check against what /metrics exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "agentflow.json"

# a series name, then its label matchers if any
_SELECTOR = re.compile(r"\b(agentflow_[a-zA-Z0-9_]+)\b(\{[^}]*\})?")
_MATCHER_KEY = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
# labels every scraped series has (the scrape's) or a histogram bucket has
SCRAPE_LABELS = frozenset({"instance", "job"})
# a family's sample names and the extra label each one adds
SUFFIXES = {
    "counter": {"_total": ()},
    "histogram": {"_bucket": ("le",), "_count": (), "_sum": ()},
    "gauge": {"": ()},
}


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            exprs.append(var["definition"])
    return exprs


def selectors(exprs: Iterable[str]) -> dict[str, set[str]]:
    """Series name -> the label names matched on it, over every expression."""
    out: dict[str, set[str]] = {}
    for expr in exprs:
        for name, matchers in _SELECTOR.findall(expr):
            out.setdefault(name, set()).update(_MATCHER_KEY.findall(matchers or ""))
    return out


def series_of(families: Iterable[Any], labels_of: dict[str, set[str]]) -> dict[str, set[str]]:
    """Sample name -> label names, for metric families (of a registry or a parsed scrape); ``labels_of``
    gives each family's label names (a parsed scrape: from its samples)."""
    out: dict[str, set[str]] = {}
    for f in families:
        for suffix, extra in SUFFIXES.get(f.type, {}).items():
            out[f.name + suffix] = set(labels_of.get(f.name, set())) | set(extra) | SCRAPE_LABELS
    return out
