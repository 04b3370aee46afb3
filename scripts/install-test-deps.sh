#!/usr/bin/env bash
# System packages the test suite needs beyond pyproject.toml's [test] extra.
# Idempotent; installs only what is missing. Needs root (or sudo) for apt.
set -euo pipefail
PY=${1:-python3}
missing=()
# The dashboard's browser tests (tests/browser) drive Debian's Chromium through
# Playwright; Playwright's own browser download is never used (no internet).
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)  # a font for its screenshots
# The S3 API's tests drive real clients (DESIGN: "S3 tests with real clients"):
# Debian's rclone, s3cmd and restic; a test skips, saying so, when one is absent.
for tool in rclone s3cmd restic; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
"$PY" -c 'import tossit' >/dev/null
