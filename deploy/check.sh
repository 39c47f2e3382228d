#!/usr/bin/env bash
# Validate the deployment and observability files without running containers.
#
#   deploy/check.sh     # compose, Prometheus config, alert rules and their tests, dashboard queries
#
# Every PromQL expression (alert rules, recording rules, dashboard panels) is parsed by promtool,
# Prometheus's own parser. That every metric they name is exported is checked by the test suite
# (tests/tests/deploy.rs), against a live server.
#
# Needs: docker-compose (or the docker compose plugin), promtool, python3.
# On Debian: apt-get install -y docker-compose prometheus python3
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    echo "check.sh: docker-compose not found (apt-get install -y docker-compose)" >&2
    exit 2
fi
for tool in promtool python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check.sh: $tool not found (apt-get install -y prometheus python3)" >&2
        exit 2
    fi
done

failed=()
# Run one check, print its output, remember a failure and carry on, so one run
# reports every problem.
check() {
    local title=$1
    shift
    printf '\n==> %s\n' "$title"
    if "$@"; then
        return 0
    fi
    failed+=("$title")
}

# Every alert needs summary, description and runbook annotations, and a unit test.
check_alert_coverage() {
    local problems alerts alert
    problems=$(awk '
        function finish() {
            if (name != "") {
                for (k in need) if (!(k in seen)) printf "  %s: no %s annotation\n", name, k
            }
            delete seen
        }
        BEGIN { need["summary"]; need["description"]; need["runbook"] }
        /^[[:space:]]*-[[:space:]]+(alert|record):/ { finish(); name = ($2 == "alert:") ? $3 : ""; next }
        /^[[:space:]]*(summary|description|runbook):/ { k = $1; sub(":", "", k); seen[k] }
        END { finish() }
    ' config/alerts.yml)
    alerts=$(sed -n 's/^[[:space:]]*-[[:space:]]*alert:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' config/alerts.yml)
    for alert in $alerts; do
        if ! grep -Eq "^[[:space:]]*alertname:[[:space:]]*${alert}[[:space:]]*$" config/alerts.test.yml; then
            problems+=$'\n'"  $alert: no test in config/alerts.test.yml"
        fi
    done
    if [[ -n ${problems//[[:space:]]/} ]]; then
        echo "$problems" >&2
        return 1
    fi
    echo "  SUCCESS: $(wc -w <<<"$alerts") alerts, each annotated and tested"
}

check_compose() {
    # The file has no default Grafana password; give the check a placeholder.
    GRAFANA_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-placeholder} \
        "${compose[@]}" -f docker-compose.yml config -q && echo "  SUCCESS: docker-compose.yml is valid"
}

check "compose file: ${compose[*]} -f docker-compose.yml config -q" check_compose
# promtool checks that the admin token file the scrape names exists: check a copy beside a
# placeholder token, as the container sees it.
check_prometheus_config() {
    local dir status
    dir=$(mktemp -d)
    cp config/prometheus.yml config/alerts.yml "$dir/"
    mkdir -p "$dir/secrets"
    echo "placeholder-admin-token" >"$dir/secrets/admin-token"
    promtool check config "$dir/prometheus.yml"
    status=$?
    rm -rf "$dir"
    return $status
}
check "Prometheus config: promtool check config config/prometheus.yml" check_prometheus_config
check "alert rules: promtool check rules config/alerts.yml" promtool check rules config/alerts.yml
check "alert annotations and test coverage" check_alert_coverage
check "alert rule tests: promtool test rules config/alerts.test.yml" promtool test rules config/alerts.test.yml

datasource_uid=$(sed -n 's/^[[:space:]]*uid:[[:space:]]*\([A-Za-z0-9_-]*\).*/\1/p' \
    config/grafana/provisioning/datasources/prometheus.yml | head -n 1)
check "dashboard queries: parsed by promtool, datasource $datasource_uid, unique panel ids" \
    python3 deploy/check_dashboard.py --datasource-uid "$datasource_uid" config/grafana/dashboards/*.json

if ((${#failed[@]})); then
    printf '\nFAILED:\n' >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
printf '\nall deployment checks passed\n'
