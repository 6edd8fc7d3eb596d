#!/usr/bin/env bash
# Checks the Prometheus examples with promtool (Debian package prometheus):
# the alerting rules and their unit tests (alerts_test.yml), the scrape
# config, and the metrics pidwatch writes for real workers, one running and
# one stopped (`promtool check metrics`: the text parser node_exporter's
# textfile collector uses, and its lint of names, types and units).
set -euo pipefail
bin=$(realpath "${1:?usage: examples/prometheus/check.sh <path to pidwatch binary>}")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pw() { "$bin" --config "$tmp/pidwatch.toml" "$@"; }
cleanup() {
  if [ -f "$tmp/pidwatch.toml" ]; then pw --quiet stop --all >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cd "$here"
promtool check rules alerts.yml
promtool test rules alerts_test.yml
# The token file the scrape config names must exist to be checked.
cp prometheus.yml alerts.yml "$tmp/"
touch "$tmp/pidwatch.token"
sed -i "s|/etc/prometheus/pidwatch.token|$tmp/pidwatch.token|" "$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml"

cat >"$tmp/pidwatch.toml" <<'TOML'
state_dir = "state"

[worker.app]
instances = 2
command = ["sleep", "1051"]

[worker.quiet]
command = ["sleep", "1052"]
TOML
pw --quiet start --all
pw --quiet stop quiet
pw metrics --textfile "$tmp/textfile/pidwatch.prom"
grep -q '^pidwatch_worker_up{worker="app@1"} 1$' "$tmp/textfile/pidwatch.prom"
grep -q '^pidwatch_worker_verdict{worker="quiet",verdict="stopped"} 1$' "$tmp/textfile/pidwatch.prom"
promtool check metrics <"$tmp/textfile/pidwatch.prom"
echo "prometheus examples checked: alerts.yml (and its tests), prometheus.yml, pidwatch metrics"
