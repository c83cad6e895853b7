#!/usr/bin/env bash
# Installs Debian's chromium for the browser end-to-end test (e2e/), unless it
# is already there. Safe to run any number of times.
set -euo pipefail

if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } >"$log" 2>&1; then
	echo "install-chromium: apt-get failed:" >&2
	tail -n 30 "$log" >&2
	exit 1
fi
echo "install-chromium: $(chromium --version 2>/dev/null || echo 'chromium installed')"
