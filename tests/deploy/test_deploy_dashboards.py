"""Grafana dashboards and Prometheus alert rules that the chart ships, kept in step with the code.

The chart packs deploy/grafana/*.json and deploy/prometheus/*.yaml through its files/ links. For
each dashboard: every metric a panel query names is one natsbus exports, every query parses
(promtool), the dashboard loads with grafana-foundation-sdk (Grafana 11 schema) without fields
the schema does not know and with every field it requires (a variable's `current` needs `text`
and `value`), and it type-checks as the `Dashboard` type of npm's @grafana/schema (Grafana 11.6,
with TypeScript; `make tools` installs both into .venv/grafana-schema from the lock in
tests/deploy/grafana-schema). The same metric and promtool checks apply to the alert rules.
Until the observability work adds those files, the tests on them skip and say so; the checkers
themselves are tested on small fixtures either way.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.tools import ROOT, find_tool

DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RULE_FILES = sorted((ROOT / "deploy" / "prometheus").glob("*.yaml"))
CHART_FILES = ROOT / "deploy" / "helm" / "natsbus" / "files"
# @grafana/schema and typescript, from tests/deploy/grafana-schema (scripts/install_test_tools.py)
GRAFANA_SCHEMA = Path(sys.executable).parent.parent / "grafana-schema" / "node_modules"
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

    :class:`~natsbus.observability.BusMetrics` and a serving process's
    :class:`~natsbus.sessions.SessionMetrics` are built on a new ``CollectorRegistry`` and their
    families are turned into the names a query uses: ``<name>_total`` for a counter,
    ``<name>_bucket|_sum|_count`` for a histogram, ``<name>`` for a gauge.
    """
    from prometheus_client import CollectorRegistry

    from natsbus.observability import METRIC_NAMES, BusMetrics
    from natsbus.sessions import SESSION_METRIC_NAMES, SessionMetrics

    registry = CollectorRegistry()
    BusMetrics(registry=registry)
    SessionMetrics("group", 1, registry=registry)
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count", "")}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    assert names >= METRIC_NAMES | SESSION_METRIC_NAMES, "the names and the registry disagree"
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


def missing_required_fields(dashboard: dict[str, Any]) -> list[str]:
    """Paths of fields the Grafana 11 schema requires that the JSON lacks.

    grafana-foundation-sdk fills a missing required field with a blank (``current: {}`` loads
    as ``{"text": "", "value": ""}``), so loading alone does not tell. Its classes type an
    optional field ``Optional[...]`` and ``to_json`` writes it only when set; every other field
    is written always, and is required unless the schema gives it a default (a value other
    than a blank: those fields may be left out).
    """
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()

    def required(obj: Any) -> set[str]:
        try:
            blank = type(obj)()
        except TypeError:  # a wrapper of free-form data (an unknown query type): no fields
            return set()
        for name, hint in typing.get_type_hints(type(obj)).items():
            if type(None) in typing.get_args(hint):
                setattr(blank, name, None)
        return {
            key
            for key, value in blank.to_json().items()
            if value is None or (not isinstance(value, Enum) and value in ("", 0, [], {}))
        }

    def walk(given: Any, loaded: Any, path: str) -> Iterator[str]:
        if hasattr(loaded, "to_json") and isinstance(given, dict):
            written = loaded.to_json()
            for key in sorted(required(loaded) - set(given)):
                yield f"{path}.{key}"
            for key, value in given.items():
                if key in written:
                    yield from walk(value, written[key], f"{path}.{key}")
        elif isinstance(given, dict) and isinstance(loaded, dict):
            for key, value in given.items():
                if key in loaded:
                    yield from walk(value, loaded[key], f"{path}.{key}")
        elif isinstance(given, list) and isinstance(loaded, list):
            for index, (a, b) in enumerate(zip(given, loaded, strict=False)):
                yield from walk(a, b, f"{path}[{index}]")

    return list(walk(dashboard, Dashboard.from_json(dashboard), "$"))


def grafana_schema_tools() -> tuple[str, Path]:
    """node and the tsc of .venv/grafana-schema, or skip saying how to get them."""
    node = shutil.which("node")
    tsc = GRAFANA_SCHEMA / "typescript" / "bin" / "tsc"
    if node is None or not tsc.is_file() or not (GRAFANA_SCHEMA / "@grafana" / "schema").is_dir():
        pytest.skip(
            "no @grafana/schema: run `.venv/bin/python scripts/install_test_tools.py` "
            "(`make tools`; it needs node and npm)"
        )
    return node, tsc


def schema_type_errors(dashboard: dict[str, Any], tmp_path: Path) -> list[str]:
    """TypeScript's errors for `<the dashboard JSON> satisfies Dashboard` (@grafana/schema).

    `satisfies` checks the object literal against the type: missing required fields, wrong
    types and enum values, and fields the type does not have (excess property checks).
    """
    node, tsc = grafana_schema_tools()
    folder = tmp_path / "grafana-schema-check"
    folder.mkdir(parents=True)
    (folder / "node_modules").symlink_to(GRAFANA_SCHEMA, target_is_directory=True)
    source = folder / "dashboard.ts"
    source.write_text(
        "import type { Dashboard } from '@grafana/schema';\n\n"
        f"export const dashboard = {json.dumps(dashboard, indent=2)} satisfies Dashboard;\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            node,
            str(tsc),
            "--noEmit",
            "--strict",
            "--pretty",
            "false",
            "--target",
            "es2022",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            source.name,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if "error TS" in line]
    assert errors or done.returncode == 0, done.stdout + done.stderr
    return errors


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


@needs(DASHBOARDS, "deploy/grafana/*.json")
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_has_every_field_the_grafana_11_schema_requires(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert not missing_required_fields(dashboard)
    for variable in dashboard.get("templating", {}).get("list", []):
        assert variable.get("current") != {}, f"{variable['name']}: current needs text and value"


@needs(DASHBOARDS, "deploy/grafana/*.json")
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_satisfies_the_grafana_schema_dashboard_type(path: Path, tmp_path: Path) -> None:
    """The issue's check: @grafana/schema's Dashboard type (npm), with TypeScript."""
    assert schema_type_errors(load_dashboard(path), tmp_path) == []


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
    assert missing_required_fields(dashboard) == []
    good = promtool_check(dashboard_queries(dashboard), tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = promtool_check(["sum(rate(natsbus_jobs_total[5m])"], tmp_path)
    assert bad.returncode != 0


BAD_VARIABLES = {
    "title": "fixture",
    "uid": "fixture",
    "schemaVersion": 39,
    "templating": {
        "list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
            {
                "name": "namespace",
                "type": "query",
                "query": "label_values(up, namespace)",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            },
        ]
    },
}


def test_checkers_catch_a_variable_without_text_and_value(tmp_path: Path) -> None:
    """`"current": {}` loads with grafana-foundation-sdk but is not what the schema allows."""
    assert unknown_dashboard_fields(BAD_VARIABLES) == []  # why the older check missed it
    assert missing_required_fields(BAD_VARIABLES) == [
        "$.templating.list[0].current.text",
        "$.templating.list[0].current.value",
    ]
    good = json.loads(json.dumps(BAD_VARIABLES))
    del good["templating"]["list"][0]["current"]
    assert missing_required_fields(good) == []


def test_type_check_catches_what_the_schema_refuses(tmp_path: Path) -> None:
    errors = schema_type_errors(BAD_VARIABLES, tmp_path / "bad")
    assert len(errors) == 1 and "'VariableOption': text, value" in errors[0], errors
    wrong = json.loads(json.dumps(BAD_VARIABLES))
    del wrong["templating"]["list"][0]["current"]
    wrong["templating"]["list"][1]["type"] = "querry"
    errors = schema_type_errors(wrong, tmp_path / "wrong")
    assert len(errors) == 1 and "VariableType" in errors[0], errors
    unknown = {"title": "fixture", "schemaVersion": 39, "panelz": []}
    errors = schema_type_errors(unknown, tmp_path / "unknown")
    assert len(errors) == 1 and "'\"panelz\"' does not exist" in errors[0], errors
    assert schema_type_errors({"title": "fixture", "schemaVersion": 39}, tmp_path / "ok") == []
