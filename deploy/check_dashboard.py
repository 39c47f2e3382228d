#!/usr/bin/env python3
"""Checks the Grafana dashboards with Prometheus's own PromQL parser.

Every panel query becomes a recording rule in a temporary rules file (Grafana's variables replaced
by values of the same kind: `$__rate_interval` by a duration, `$instance` by a regular expression)
and `promtool check rules` parses it: a query that Prometheus would reject fails here. Besides,
every panel must have a unique id and query the provisioned Prometheus datasource, and every
query must be non-empty.

Whether each metric a query names is one the server exports is checked by the test suite
(tests/tests/deploy.rs), which parses the same queries with a PromQL parser and compares the
metric names with a live server's /metrics.

Usage: check_dashboard.py --datasource-uid UID DASHBOARD.json...
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

# Grafana's variables, replaced by values of the same kind so that the query parses as PromQL.
VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "15s",
    "$__range": "1h",
    "$instance": ".*",
}


def queries(dashboard):
    """Yields (panel title, panel, target) for every query panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        for inner in [panel] + panel.get("panels", []):
            for target in inner.get("targets", []):
                yield inner.get("title", "?"), inner, target


def substitute(expr):
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    return expr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasource-uid", required=True)
    ap.add_argument("dashboards", nargs="+")
    a = ap.parse_args()
    problems = []
    rules = []
    for path in a.dashboards:
        with open(path) as f:
            dashboard = json.load(f)
        ids = [p.get("id") for p in dashboard.get("panels", [])]
        for dup in sorted({i for i in ids if ids.count(i) > 1}, key=str):
            problems.append(f"{path}: panel id {dup} is used twice")
        for title, panel, target in queries(dashboard):
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            if uid != a.datasource_uid:
                problems.append(f"{path}: panel {title!r}: datasource uid {uid!r}, expected {a.datasource_uid!r}")
            expr = (target.get("expr") or "").strip()
            if not expr:
                problems.append(f"{path}: panel {title!r}: empty query")
                continue
            rules.append((f"{path} panel {title!r} {target.get('refId', '?')}", substitute(expr)))
    with tempfile.TemporaryDirectory() as tmp:
        rules_path = os.path.join(tmp, "dashboard-queries.yml")
        with open(rules_path, "w") as f:
            f.write("groups:\n  - name: dashboard-queries\n    rules:\n")
            for n, (_, expr) in enumerate(rules):
                f.write(f"      - record: dashboard:query_{n}\n        expr: {json.dumps(expr)}\n")
        result = subprocess.run(["promtool", "check", "rules", rules_path], capture_output=True, text=True)
        if result.returncode != 0:
            out = result.stdout + result.stderr
            problems.append("promtool rejected a dashboard query:\n" + out)
            for n, (where, expr) in enumerate(rules):
                if f'"dashboard:query_{n}"' in out:
                    problems.append(f"  ({where}: {expr})")
    if problems:
        print(f"check_dashboard: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"check_dashboard: OK: {len(a.dashboards)} dashboard(s), {len(rules)} queries parsed by promtool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
