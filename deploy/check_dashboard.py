#!/usr/bin/env python3
"""Check that dashboards and alert rules only query metrics the server exports.

A dashboard panel or an alert whose expression names a metric that does not
exist shows "No data" or never fires, and nothing tells anyone. This script
finds every PromQL expression in Grafana dashboard JSON files (panel targets,
rows, annotations, template variables) and in Prometheus rule files, extracts
the metric names they use, and fails listing each one that the given metrics
source does not contain.

The metrics source is either a Prometheus text exposition dump (what
`curl http://127.0.0.1:9100/metrics` prints), an http(s) URL serving one, or a
plain list with one metric name per line, optionally followed by its type
("gameserver_close_detect_seconds histogram"). Histogram families count with
their _bucket/_sum/_count series, summaries with _sum/_count, counters also
under their _total name.

Without --metrics it only lints the dashboards (valid JSON, unique panel ids,
every query naming the provisioned datasource uid, no empty queries).

Standard library only, so it runs wherever python3 does.

Usage:
  check_dashboard.py [--metrics FILE_OR_URL] [--rules RULES.yml ...]
                     [--datasources PROVISIONING.yml] DASHBOARD.json ...
Exit status: 0 all good, 1 problems found (listed on stderr), 2 usage/IO error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# PromQL functions (Prometheus 2.x and 3.x, experimental ones included) and
# aggregation operators. An identifier followed by "(" that is not in here is
# reported as an unknown function: it is almost always a typo.
FUNCTIONS = frozenset(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time
    ceil changes clamp clamp_max clamp_min cos cosh count_over_time day_of_month
    day_of_week day_of_year days_in_month deg delta deriv double_exponential_smoothing
    exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
    histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase
    info irate label_join label_replace last_over_time ln log10 log2 mad_over_time
    max_over_time min_over_time minute month pi predict_linear present_over_time
    quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
    sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time
    tan tanh time timestamp vector year
    sum min max avg group stddev stdvar count count_values bottomk topk quantile
    limitk limit_ratio
    start end
    """.split()
)
AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio".split()
)
# Keywords that take a parenthesised list of label names.
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# Other reserved words; never metric names in this position.
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
# Series Prometheus itself attaches to every target or rule, not exported by
# the server.
BUILTIN_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)
METRIC_TYPES = frozenset(
    {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset", "gaugehistogram"}
)
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
TOKEN = re.compile(
    r"""
      (?P<num>(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)[a-zA-Z0-9_]*)
    | (?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<lp>\()
    | (?P<rp>\))
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
NAME_MATCHER = re.compile(r'__name__\s*=\s*"((?:\\.|[^"\\])*)"')
GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$__[a-zA-Z_]+|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]*\]\]")


@dataclass
class Query:
    """One PromQL expression and where it was found, for error messages."""

    where: str
    expr: str


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        self.items.append(msg)


def metric_names(expr: str) -> tuple[set[str], set[str]]:
    """Return (metric names, unknown function names) used by a PromQL expression.

    Grafana template variables are neutralised first, then strings (after
    collecting {__name__="..."} matchers), comments, label matchers {...} and
    range/subquery brackets [...] are removed. Of the remaining identifiers,
    those followed by "(" are functions, those after by/without/on/ignoring/
    group_left/group_right are label names, those after "offset" or "@" are
    durations or modifiers, and keywords are skipped: the rest are metrics.
    """
    names: set[str] = set(NAME_MATCHER.findall(expr))
    unknown_functions: set[str] = set()
    text = STRING.sub('""', expr)
    text = GRAFANA_VAR.sub(" 1 ", text)
    text = re.sub(r"#[^\n]*", " ", text)
    # Matchers and ranges never nest once strings are gone.
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(text)]
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind != "id":
            if kind == "other" and value == "@":
                i += 2  # "@ 1609746000", "@ start()": the function rule handles start/end
                continue
            i += 1
            continue
        lower = value.lower()
        if lower in LABEL_LIST_KEYWORDS:
            if nxt[0] == "lp":
                depth, i = 0, i + 1
                while i < len(tokens):
                    if tokens[i][0] == "lp":
                        depth += 1
                    elif tokens[i][0] == "rp":
                        depth -= 1
                        if depth == 0:
                            break
                    i += 1
            i += 1
            continue
        if lower == "offset":
            i += 2
            if i - 1 < len(tokens) and tokens[i - 1][1] == "-":
                i += 1
            continue
        if value in AGGREGATIONS and nxt[0] == "id" and nxt[1].lower() in ("by", "without"):
            i += 1  # "sum by (job) (...)": the grouping comes before the argument
            continue
        if nxt[0] == "lp":
            if value not in FUNCTIONS:
                unknown_functions.add(value)
            i += 1
            continue
        if lower in KEYWORDS:
            i += 1
            continue
        names.add(value)
        i += 1
    return names, unknown_functions


def load_exported(source: str) -> set[str]:
    """Metric series names from an exposition dump, a URL or a plain list."""
    if re.match(r"https?://", source):
        with urllib.request.urlopen(source, timeout=10) as resp:  # noqa: S310 (operator-given URL)
            text = resp.read().decode("utf-8", "replace")
    else:
        text = Path(source).read_text(encoding="utf-8")
    names: set[str] = set()
    types: dict[str, str] = {}
    family_names: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE", "UNIT"):
                family_names.add(parts[2])
                if parts[1] == "TYPE" and len(parts) == 4:
                    types[parts[2]] = parts[3].strip()
            continue
        m = IDENT.match(line)
        if not m:
            raise ValueError(f"{source}:{lineno}: not a metric name or sample: {raw!r}")
        name = m.group()
        rest = line[m.end() :].strip()
        if rest in METRIC_TYPES:
            family_names.add(name)
            types[name] = rest
        else:
            names.add(name)
    for family in family_names:
        kind = types.get(family, "untyped")
        if kind == "histogram":
            names.update(family + s for s in ("_bucket", "_sum", "_count"))
        elif kind == "gaugehistogram":
            names.update(family + s for s in ("_bucket", "_gsum", "_gcount"))
        elif kind == "summary":
            names.update(family + s for s in ("", "_sum", "_count"))
        elif kind == "counter":
            # Prometheus text format names the family with _total; OpenMetrics without.
            names.add(family)
            names.add(family if family.endswith("_total") else family + "_total")
        elif kind == "info":
            names.add(family if family.endswith("_info") else family + "_info")
        else:
            names.add(family)
    return names


def dashboard_queries(path: Path, doc: dict) -> list[Query]:
    queries: list[Query] = []

    def walk_panels(panels: list, prefix: str) -> None:
        for panel in panels or []:
            title = panel.get("title") or f"id {panel.get('id')}"
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if isinstance(expr, str) and expr.strip():
                    queries.append(Query(f"{path}: panel {prefix}{title!r} ref {target.get('refId')}", expr))
            walk_panels(panel.get("panels") or [], f"{prefix}{title} / ")

    walk_panels(doc.get("panels") or [], "")
    for ann in (doc.get("annotations") or {}).get("list") or []:
        expr = ann.get("expr") or (ann.get("target") or {}).get("expr")
        if isinstance(expr, str) and expr.strip():
            queries.append(Query(f"{path}: annotation {ann.get('name')!r}", expr))
    for var in (doc.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query") or q.get("expr")
        if not isinstance(q, str) or not q.strip():
            continue
        where = f"{path}: variable ${var.get('name')}"
        q = q.strip()
        # Grafana's Prometheus variable helpers wrap a selector or an expression.
        m = re.fullmatch(r"label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)", q, re.S)
        if m:
            queries.append(Query(where, m.group(1)))
        elif re.fullmatch(r"label_values\(\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)|label_names\(.*\)|metrics\(.*\)", q, re.S):
            continue
        else:
            m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
            queries.append(Query(where, m.group(1) if m else q))
    return queries


def rule_queries(path: Path) -> tuple[list[Query], set[str]]:
    """`expr:` values and `record:` names from a Prometheus rule file.

    A small reader for the YAML shapes rule files use (plain, quoted, and
    block `|`/`>` scalars), so the check needs no YAML library.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    queries: list[Query] = []
    recorded: set[str] = set()
    current = "?"
    i = 0
    while i < len(lines):
        line = lines[i]
        named = re.match(r"^\s*(?:-\s+)?(alert|record):\s*['\"]?([^'\"#\s]+)", line)
        if named:
            current = f"{named.group(1)} {named.group(2)}"
            if named.group(1) == "record":
                recorded.add(named.group(2))
        m = re.match(r"^(\s*(?:-\s+)?)expr:\s?(.*)$", line)
        if not m:
            i += 1
            continue
        key_col = len(m.group(1))
        value = m.group(2).strip()
        start = i + 1
        i += 1

        def continuation() -> list[str]:
            nonlocal i
            body = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > key_col):
                body.append(lines[i])
                i += 1
            return body

        if value[:1] in ("|", ">"):
            expr = "\n".join(continuation())
        elif value[:1] == '"':
            chunk = value
            while not re.fullmatch(r'"(?:\\.|[^"\\])*"\s*(#.*)?', chunk) and i < len(lines):
                chunk += " " + lines[i].strip()
                i += 1
            expr = json.loads(re.match(r'"(?:\\.|[^"\\])*"', chunk).group())
        elif value[:1] == "'":
            chunk = value
            while not re.fullmatch(r"'(?:''|[^'])*'\s*(#.*)?", chunk) and i < len(lines):
                chunk += " " + lines[i].strip()
                i += 1
            expr = re.match(r"'((?:''|[^'])*)'", chunk).group(1).replace("''", "'")
        else:
            expr = re.sub(r"\s#.*$", "", value) + "\n" + "\n".join(continuation())
        queries.append(Query(f"{path}:{start}: {current}", expr))
    return queries, recorded


def lint_dashboard(path: Path, doc: dict, ds_uid: str | None, problems: Problems) -> None:
    if not isinstance(doc.get("schemaVersion"), int):
        problems.add(f"{path}: schemaVersion missing")
    if not doc.get("uid"):
        problems.add(f"{path}: dashboard uid missing (links and provisioning need a stable uid)")
    seen_ids: dict[int, str] = {}

    def check_ds(ds: object, where: str) -> None:
        if ds_uid is None or not isinstance(ds, dict):
            return
        if ds.get("type") == "prometheus" and ds.get("uid") != ds_uid:
            problems.add(f"{where}: datasource uid {ds.get('uid')!r}, provisioned uid is {ds_uid!r}")

    def walk(panels: list) -> None:
        for panel in panels or []:
            title = panel.get("title") or "(untitled)"
            where = f"{path}: panel {title!r}"
            pid = panel.get("id")
            if not isinstance(pid, int):
                problems.add(f"{where}: no numeric id")
            elif pid in seen_ids:
                problems.add(f"{where}: id {pid} also used by {seen_ids[pid]!r}")
            else:
                seen_ids[pid] = title
            if "gridPos" not in panel:
                problems.add(f"{where}: no gridPos")
            check_ds(panel.get("datasource"), where)
            if panel.get("type") == "row":
                walk(panel.get("panels") or [])
                continue
            if panel.get("type") in ("text", "news", "dashlist", "alertlist"):
                continue
            targets = panel.get("targets") or []
            if not targets:
                problems.add(f"{where}: no queries")
            refs = [t.get("refId") for t in targets]
            if len(refs) != len(set(refs)):
                problems.add(f"{where}: duplicate refId in {refs}")
            for t in targets:
                check_ds(t.get("datasource"), f"{where} ref {t.get('refId')}")
                if not str(t.get("expr") or "").strip():
                    problems.add(f"{where} ref {t.get('refId')}: empty expr")

    walk(doc.get("panels") or [])
    for var in (doc.get("templating") or {}).get("list") or []:
        check_ds(var.get("datasource"), f"{path}: variable ${var.get('name')}")
    for ann in (doc.get("annotations") or {}).get("list") or []:
        check_ds(ann.get("datasource"), f"{path}: annotation {ann.get('name')!r}")


def provisioned_uid(path: Path) -> str:
    m = re.search(r"^\s*uid:\s*['\"]?([^'\"\s#]+)", path.read_text(encoding="utf-8"), re.M)
    if not m:
        raise ValueError(f"{path}: no datasource uid")
    return m.group(1)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dashboards", nargs="+", type=Path, help="Grafana dashboard JSON files")
    ap.add_argument("--metrics", help="/metrics dump, URL, or list of metric names")
    ap.add_argument("--rules", action="append", default=[], type=Path, help="Prometheus rule file (repeatable)")
    ap.add_argument("--datasources", type=Path, help="Grafana datasource provisioning file (for the uid check)")
    args = ap.parse_args(argv)
    problems = Problems()
    try:
        ds_uid = provisioned_uid(args.datasources) if args.datasources else None
        queries: list[Query] = []
        recorded: set[str] = set()
        for path in args.dashboards:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                problems.add(f"{path}: invalid JSON: {e}")
                continue
            lint_dashboard(path, doc, ds_uid, problems)
            queries += dashboard_queries(path, doc)
        for path in args.rules:
            found, names = rule_queries(path)
            queries += found
            recorded |= names
        exported = load_exported(args.metrics) if args.metrics else None
    except (OSError, ValueError) as e:
        print(f"check_dashboard: {e}", file=sys.stderr)
        return 2

    used: set[str] = set()
    for q in queries:
        names, unknown_fns = metric_names(q.expr)
        used |= names
        for fn in sorted(unknown_fns):
            problems.add(f"{q.where}: unknown PromQL function {fn}()")
        if exported is None:
            continue
        for name in sorted(names - exported - BUILTIN_SERIES - recorded):
            hint = ""
            base = re.sub(r"_(bucket|sum|count|total)$", "", name)
            if base != name and base in exported:
                hint = f" ({base} is exported; give its type in the list, e.g. '{base} histogram')"
            problems.add(f"{q.where}: metric {name} is not exported{hint}")

    if problems.items:
        print(f"check_dashboard: {len(problems.items)} problem(s):", file=sys.stderr)
        for p in problems.items:
            print(f"  {p}", file=sys.stderr)
        return 1
    what = f"{len(used)} metric names checked against {args.metrics}" if exported is not None else "lint only"
    print(f"check_dashboard: OK: {len(args.dashboards)} dashboard(s), {len(queries)} queries; {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
