#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzingclient against internal/cmd/echo, an echo
# server over package transport: every case but the compression ones
# (12.*, 13.*: permessage-deflate is declined), with the echo's message limit
# raised to 16 MiB for the 9.* cases. Not part of CI: the suite is not in
# this repository and needs Python 2.7.
#
# Usage (from anywhere in the module):
#
#   WSTEST=/path/to/wstest internal/autobahn/run.sh   # a wstest command
#   WSTEST=docker internal/autobahn/run.sh            # the crossbario/autobahn-testsuite image
#
# wstest is autobahntestsuite 0.8.x (Python 2.7, Twisted, autobahn 0.10.9),
# from its public sources, e.g. in a Python 2.7 virtualenv:
#
#   virtualenv -p python2.7 /tmp/wstest && /tmp/wstest/bin/pip install autobahntestsuite
#   WSTEST=/tmp/wstest/bin/wstest internal/autobahn/run.sh
#
# WSTEST may be any command that takes wstest's arguments (a wrapper script
# around a source checkout will do). Other settings:
#
#   CASES='["*"]'   cases to run, a JSON list (default: all of them)
#   PORT=9001       the echo server's port on 127.0.0.1
#   OUT=dir         where the echo's log, the spec and the reports go
#                   (default: a new temporary directory)
#
# It prints a count of the cases by verdict (OK, NON-STRICT, INFORMATIONAL,
# FAILED, ...) and the cases that are not OK, and exits 1 if any case is
# FAILED, NON-STRICT, WRONG CODE or UNIMPLEMENTED. The full report is
# $OUT/reports/index.html.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
WSTEST=${WSTEST:-wstest}
CASES=${CASES:-'["*"]'}
PORT=${PORT:-9001}
OUT=${OUT:-$(mktemp -d -t firetower-autobahn.XXXXXX)}
mkdir -p "$OUT"

echo "building the echo server"
(cd "$root" && go build -o "$OUT/echo" ./internal/cmd/echo)

"$OUT/echo" -addr "127.0.0.1:$PORT" -max-message $((16 << 20)) >"$OUT/echo.log" 2>&1 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true; wait "$echo_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	grep -q '^listening on' "$OUT/echo.log" && break
	kill -0 "$echo_pid" 2>/dev/null || { cat "$OUT/echo.log" >&2; exit 1; }
	sleep 0.1
done
grep -q '^listening on' "$OUT/echo.log" || { echo "the echo server did not start" >&2; exit 1; }

cat >"$OUT/fuzzingclient.json" <<EOF
{
  "outdir": "$OUT/reports",
  "servers": [{"agent": "firetower", "url": "ws://127.0.0.1:$PORT"}],
  "cases": $CASES,
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
EOF

echo "running fuzzingclient; reports in $OUT/reports"
if [ "$WSTEST" = docker ]; then
	docker run --rm --network host -v "$OUT:$OUT" crossbario/autobahn-testsuite \
		wstest -m fuzzingclient -s "$OUT/fuzzingclient.json" >"$OUT/wstest.log" 2>&1
else
	$WSTEST -m fuzzingclient -s "$OUT/fuzzingclient.json" >"$OUT/wstest.log" 2>&1
fi

python3 - "$OUT/reports/index.json" <<'EOF'
import collections, json, sys

def key(case):
    return [int(p) for p in case.split(".")]

index = json.load(open(sys.argv[1]))
bad = 0
for agent, cases in index.items():
    counts = collections.Counter(r["behavior"] for r in cases.values())
    print("%s: %d cases: %s" % (agent, len(cases), ", ".join("%d %s" % (n, b) for b, n in counts.most_common())))
    for case in sorted(cases, key=key):
        r = cases[case]
        if r["behavior"] != "OK" or r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            print("  %-8s %s (close: %s)" % (case, r["behavior"], r["behaviorClose"]))
        if r["behavior"] in ("FAILED", "NON-STRICT", "WRONG CODE", "UNIMPLEMENTED") or r["behaviorClose"] in ("FAILED", "WRONG CODE"):
            bad += 1
sys.exit(1 if bad else 0)
EOF
