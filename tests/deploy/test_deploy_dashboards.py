"""Grafana dashboards and Prometheus alert rules that the chart ships, kept in step with the code.

The chart packs deploy/grafana/*.json and deploy/prometheus/*.yaml through its files/ links. For
each dashboard: every metric a panel query names is one natsbus exports, every query parses
(promtool), and the dashboard loads with grafana-foundation-sdk (Grafana 11 schema) without
fields the schema does not know. The same metric and promtool checks apply to the alert rules.
Until the observability work adds those files, the tests on them skip and say so; the checkers
themselves are tested on small fixtures either way.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.tools import ROOT, find_tool

DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RULE_FILES = sorted((ROOT / "deploy" / "prometheus").glob("*.yaml"))
CHART_FILES = ROOT / "deploy" / "helm" / "natsbus" / "files"
# Metrics a natsbus dashboard may use that natsbus does not export itself.
EXTERNAL_METRICS = {"up"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan", "start", "end",
}  # fmt: skip
# Grafana's variables in the order they must be replaced (longest first).
DURATION_VARIABLES = re.compile(r"\$\{?__(rate_interval|interval|range)(_ms|_s)?\}?")
OTHER_VARIABLES = re.compile(r"\$\{[^}]+\}|\$\w+")


def needs(files: list[Path], what: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not files, reason=f"waiting on the observability work: no {what} yet")


# ---------------------------------------------------------------------------------------------
# what natsbus exports
# ---------------------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Every series name natsbus exposes, read from a fresh registry.

    :class:`~natsbus.observability.BusMetrics` is built on a new ``CollectorRegistry`` and its
    families are turned into the names a query uses: ``<name>_total`` for a counter,
    ``<name>_bucket|_sum|_count`` for a histogram, ``<name>`` for a gauge.
    """
    from prometheus_client import CollectorRegistry

    from natsbus.observability import METRIC_NAMES, BusMetrics

    registry = CollectorRegistry()
    BusMetrics(registry=registry)
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count", "")}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    assert names >= METRIC_NAMES, "METRIC_NAMES and the registry disagree"
    return names


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a light parse, enough for our queries)."""
    text = DURATION_VARIABLES.sub("5m", expr)
    text = OTHER_VARIABLES.sub("x", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', text)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![A-Za-z0-9_:])\d[\d.]*(e[+-]?\d+)?(ms|[smhdwy])*", "", text)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or name.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        if name == "x":  # a Grafana variable
            continue
        names.add(name)
    return names


def unknown_metrics(expressions: list[str], exported: set[str]) -> dict[str, set[str]]:
    wrong = {}
    for expr in expressions:
        names = metric_names_in(expr) - exported - EXTERNAL_METRICS
        if names:
            wrong[expr] = names
    return wrong


# ---------------------------------------------------------------------------------------------
# dashboards
# ---------------------------------------------------------------------------------------------


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)  # rows keep collapsed panels inside them


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [
        target["expr"]
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            inner = re.fullmatch(r"\s*(?:label_values|query_result)\((.*)\)\s*", query, re.S)
            if inner:
                # label_values(metric{...}, label): the selector is the first argument
                selector = (
                    inner.group(1).rsplit(",", 1)[0] if "," in inner.group(1) else inner.group(1)
                )
                queries.append(selector)
    return queries


def unknown_dashboard_fields(dashboard: dict[str, Any]) -> list[str]:
    """Paths of fields that grafana-foundation-sdk (Grafana 11) drops when it loads the JSON."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    loaded = Dashboard.from_json(dashboard)
    again = json.loads(json.dumps(loaded, cls=JSONEncoder))

    def walk(given: Any, kept: Any, path: str) -> Iterator[str]:
        if isinstance(given, dict) and isinstance(kept, dict):
            for key, value in given.items():
                if key not in kept:
                    if value not in (None, {}, []):
                        yield f"{path}.{key}"
                else:
                    yield from walk(value, kept[key], f"{path}.{key}")
        elif isinstance(given, list) and isinstance(kept, list):
            for index, (a, b) in enumerate(zip(given, kept, strict=False)):
                yield from walk(a, b, f"{path}[{index}]")

    return list(walk(dashboard, again, "$"))


def promtool_check(expressions: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the expressions, each as a recording rule."""
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip(
            "no promtool: scripts/install_test_tools.py could not get Debian's prometheus package"
        )
    rules = {
        "groups": [
            {
                "name": "natsbus-dashboard-queries",
                "rules": [
                    {
                        "record": f"natsbus:query_{i}",
                        "expr": OTHER_VARIABLES.sub("x", DURATION_VARIABLES.sub("5m", expr)),
                    }
                    for i, expr in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# the real dashboards and rules
# ---------------------------------------------------------------------------------------------


def test_chart_packs_the_dashboards_and_rules_through_links() -> None:
    assert (CHART_FILES / "grafana").is_symlink()
    assert (CHART_FILES / "grafana").readlink() == Path("../../../grafana")
    assert (CHART_FILES / "prometheus").is_symlink()
    assert (CHART_FILES / "prometheus").readlink() == Path("../../../prometheus")


@needs(DASHBOARDS, "deploy/grafana/*.json")
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_uses_only_exported_metrics(path: Path) -> None:
    queries = dashboard_queries(load_dashboard(path))
    assert queries, f"{path.name} has no Prometheus queries"
    assert not unknown_metrics(queries, exported_metric_names())


@needs(DASHBOARDS, "deploy/grafana/*.json")
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_parse(path: Path, tmp_path: Path) -> None:
    done = promtool_check(dashboard_queries(load_dashboard(path)), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@needs(DASHBOARDS, "deploy/grafana/*.json")
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_loads_with_the_grafana_11_schema(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard.get("uid") and dashboard.get("title")
    assert not unknown_dashboard_fields(dashboard)


@needs(RULE_FILES, "deploy/prometheus/*.yaml")
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_alert_rules_check_and_use_exported_metrics(path: Path) -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip("no promtool: see scripts/install_test_tools.py")
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    expressions = [rule["expr"] for group in groups for rule in group["rules"]]
    assert not unknown_metrics(expressions, exported_metric_names())


# ---------------------------------------------------------------------------------------------
# the checkers themselves
# ---------------------------------------------------------------------------------------------


def test_exported_metric_names() -> None:
    names = exported_metric_names()
    assert "natsbus_jobs_total" in names
    assert "natsbus_dispatch_latency_seconds_bucket" in names
    assert "natsbus_connection_up" in names
    assert "natsbus_jobs" not in names  # a counter is queried with _total


def test_metric_names_are_read_from_queries() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, lane) (rate(natsbus_dispatch_latency_seconds_bucket"
        '{job=~"$job", lane="sys"}[$__rate_interval]))) / on(pod) group_left '
        "max without (instance) (natsbus_queue_depth) > bool 0 and up offset 5m"
    )
    assert metric_names_in(expr) == {
        "natsbus_dispatch_latency_seconds_bucket",
        "natsbus_queue_depth",
        "up",
    }


def test_checkers_catch_a_bad_dashboard(tmp_path: Path) -> None:
    exported = {"natsbus_jobs_total"}
    dashboard = {
        "title": "fixture",
        "uid": "fixture",
        "schemaVersion": 39,
        "panelz": [{"title": "x"}],  # misspelt
        "panels": [
            {
                "type": "timeseries",
                "title": "jobs",
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                "targets": [
                    {"refId": "A", "expr": "sum(rate(natsbus_jobs_total[$__rate_interval]))"},
                    {"refId": "B", "expr": "sum(rate(natsbus_jbos_total[5m]))"},
                ],
            }
        ],
    }
    assert unknown_metrics(dashboard_queries(dashboard), exported) == {
        "sum(rate(natsbus_jbos_total[5m]))": {"natsbus_jbos_total"}
    }
    assert unknown_dashboard_fields(dashboard) == ["$.panelz"]
    good = promtool_check(dashboard_queries(dashboard), tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = promtool_check(["sum(rate(natsbus_jobs_total[5m])"], tmp_path)
    assert bad.returncode != 0
