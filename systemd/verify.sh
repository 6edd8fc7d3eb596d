#!/usr/bin/env bash
# Checks the unit files with `systemd-analyze verify`: the templates for an
# example instance, pidwatch.service and pidwatch-metrics.{service,timer} as
# system units and user/pidwatch.service as a user unit (`--user`), with the
# pidwatch binary pointed at the one given as $1 (so that the check does not
# need pidwatch installed in /usr/local/bin).
set -euo pipefail
bin=$(realpath "${1:?usage: systemd/verify.sh <path to pidwatch binary>}")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
inst=$(systemd-escape --path /srv/app/.claude/orchestrator)
for unit in pidwatch@.service pidwatch-check@.service pidwatch-check@.timer pidwatch.service \
  pidwatch-metrics.service pidwatch-metrics.timer; do
  sed "s|/usr/local/bin/pidwatch|$bin|g" "$here/$unit" >"$tmp/${unit/@./@$inst.}"
done
mkdir -p "$tmp/user"
sed "s|/usr/local/bin/pidwatch|$bin|g" "$here/user/pidwatch.service" >"$tmp/user/pidwatch.service"
# Documentation=man:pidwatch(1) is checked too: the page the binary makes.
mkdir -p "$tmp/man/man1"
"$bin" man >"$tmp/man/man1/pidwatch.1"
export MANPATH="$tmp/man:"

# verify exits 0 on some warnings; treat any line about our units as failure.
check() {
  local out
  out=$("$@" 2>&1) || { echo "$out"; exit 1; }
  if grep -E "pidwatch" <<<"$out"; then
    exit 1
  fi
}
cd "$tmp"
check systemd-analyze verify ./*.service ./*.timer
# A user manager needs XDG_RUNTIME_DIR, even to verify; as root or in CI it
# is often unset.
mkdir -m700 "$tmp/runtime"
cd "$tmp/user"
XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$tmp/runtime} check systemd-analyze --user verify ./pidwatch.service
echo "systemd units verified: pidwatch@$inst.service pidwatch-check@$inst.{service,timer} pidwatch.service pidwatch-metrics.{service,timer} user/pidwatch.service"
