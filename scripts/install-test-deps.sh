#!/usr/bin/env bash
# System packages the test suite needs beyond pyproject.toml's [test] extra.
# Idempotent; installs only what is missing. Needs root (or sudo) for apt.
set -euo pipefail
PY=${1:-python3}
missing=()
# (The browser tests of the dashboard will add Debian's chromium here.)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
"$PY" -c 'import tossit' >/dev/null
