"""The Grafana dashboard and the Prometheus alert rules use exactly the metrics natsbus exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from natsbus.observability import METRIC_NAMES as BUS_METRIC_NAMES
from natsbus.sessions import SESSION_METRIC_NAMES

from helpers.tools import ROOT, find_tool

DASHBOARD = ROOT / "deploy" / "grafana" / "natsbus-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "natsbus-rules.yaml"

# What the processes export: the buses' and workers' metrics, and a serving process's sessions'.
METRIC_NAMES = BUS_METRIC_NAMES | SESSION_METRIC_NAMES
_NAME = re.compile(r"\bnatsbus_[a-z0-9_]+")
# What a histogram family adds to its name in the exposition.
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
_HISTOGRAMS = {name for name in METRIC_NAMES if name.endswith("_seconds")}
PROMTOOL_MISSING = (
    "promtool is not installed: `make tools` (run by `make test`) installs it from the Debian "
    "package `prometheus` where apt-get is allowed"
)


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            exprs.append(variable["query"]["query"])
    return exprs


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def exported(name: str) -> bool:
    if name in METRIC_NAMES:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) in _HISTOGRAMS
        for suffix in _HISTOGRAM_SUFFIXES
    )


def names_in(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _NAME.findall(expr)}


def test_dashboard_uses_only_exported_metrics() -> None:
    used = names_in(dashboard_exprs())
    assert used, "the dashboard queries no natsbus metric"
    assert {name for name in used if not exported(name)} == set()


def test_rules_use_only_exported_metrics() -> None:
    used = names_in([rule["expr"] for rule in rules()])
    assert {name for name in used if not exported(name)} == set()


def test_dashboard_covers_what_operators_watch() -> None:
    used = names_in(dashboard_exprs())
    for name in (
        "natsbus_dispatch_latency_seconds_bucket",
        "natsbus_messages_published_total",
        "natsbus_messages_dropped_total",
        "natsbus_handler_errors_total",
        "natsbus_decode_errors_total",
        "natsbus_subscriber_queue_depth",
        "natsbus_jobs_total",
        "natsbus_job_redeliveries_total",
        "natsbus_reconnects_total",
    ):
        assert name in used, name
    for name in SESSION_METRIC_NAMES - {"natsbus_session_slots"}:
        assert name in used or f"{name}_bucket" in used, name
    exprs = " ".join(dashboard_exprs())
    assert "histogram_quantile(0.5, sum by (le, lane)" in exprs
    assert "histogram_quantile(0.99, sum by (le, lane)" in exprs


def test_every_alert_is_labelled_and_explained() -> None:
    for rule in rules():
        assert rule["alert"].startswith("Natsbus"), rule
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule
        assert rule["annotations"]["summary"], rule


def test_rules_file_passes_promtool(tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip(PROMTOOL_MISSING)
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip(PROMTOOL_MISSING)
    # Each query as a recording rule, Grafana's variables replaced by values promtool accepts.
    recording = [
        {
            "record": f"natsbus:dashboard_query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$namespace", ".*"),
        }
        for i, expr in enumerate(dashboard_exprs())
        if not expr.startswith("label_values(")
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
