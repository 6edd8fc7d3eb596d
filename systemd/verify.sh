#!/usr/bin/env bash
# Checks the unit files with `systemd-analyze verify`, for an example
# instance, with ExecStart pointed at the binary given as $1 (so that the
# check does not need pidwatch installed in /usr/local/bin).
set -euo pipefail
bin=$(realpath "${1:?usage: systemd/verify.sh <path to pidwatch binary>}")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
inst=$(systemd-escape --path /srv/app/.claude/orchestrator)
for unit in pidwatch@.service pidwatch-check@.service pidwatch-check@.timer; do
  sed "s|/usr/local/bin/pidwatch|$bin|g" "$here/$unit" >"$tmp/${unit/@./@$inst.}"
done
# Documentation=man:pidwatch(1) is checked too: the page the binary makes.
mkdir -p "$tmp/man/man1"
"$bin" man >"$tmp/man/man1/pidwatch.1"
export MANPATH="$tmp/man:"
cd "$tmp"
out=$(systemd-analyze verify ./*.service ./*.timer 2>&1) || { echo "$out"; exit 1; }
# verify exits 0 on some warnings; treat any line about our units as failure.
if grep -E "pidwatch" <<<"$out"; then
  exit 1
fi
echo "systemd units verified: pidwatch@$inst.service pidwatch-check@$inst.{service,timer}"
