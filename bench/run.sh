#!/usr/bin/env bash
# Runs the bench suite N times (default 3) and rewrites the results section
# of README.md from that output.
#
#   ./run.sh            # 3 full runs (each about 10 minutes on 2 cores)
#   ./run.sh 5          # 5 runs
#   BENCH_QUICK=1 ./run.sh 1   # the CI size, about a minute and a half
#
# The raw output of every run stays in results/ (run-N.txt, benchstat.txt).
set -euo pipefail
cd "$(dirname "$0")"

runs=${1:-3}
dir=results
rm -rf "$dir"
mkdir -p "$dir"

cmd=(go test -run '^$' -bench . -timeout 45m)
cmdtext="go test -run '^\$' -bench . -timeout 45m"
go vet ./...
failed=""
for i in $(seq 1 "$runs"); do
	echo "== run $i of $runs: $cmdtext" >&2
	echo "$(date -u +%FT%TZ) start run $i, loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$dir/conditions.txt"
	# A benchmark that fails does not stop the others (go test goes on and
	# exits non-zero at the end): the run is kept, and the report says so.
	if ! "${cmd[@]}" | tee "$dir/run-$i.txt"; then
		failed="$failed $i"
		echo "$(date -u +%FT%TZ) run $i: go test failed (see run-$i.txt: --- FAIL)" >>"$dir/conditions.txt"
	fi
	echo "$(date -u +%FT%TZ) end run $i, loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$dir/conditions.txt"
done

cat "$dir"/run-*.txt >"$dir/all.txt"
go tool benchstat "$dir/all.txt" >"$dir/benchstat.txt"
quick=""
if [ -n "${BENCH_QUICK:-}" ]; then quick="BENCH_QUICK=1 "; fi
loads=$(grep -o 'loadavg [0-9. ]*' "$dir/conditions.txt" | cut -d' ' -f2 | paste -sd' ' -)
note="1-minute load average at the start and end of each run: ${loads} (the machine is shared)"
if [ -n "$failed" ]; then
	fails=$(grep -h -- '--- FAIL' "$dir"/run-*.txt | sed 's/^ *--- FAIL: //; s/ (.*//' | sort -u | paste -sd' ' -)
	note="$note. A benchmark failed in run(s)${failed}: ${fails}; the figures of a failed benchmark are missing from that run"
fi
go run ./cmd/benchreport -readme README.md -benchstat "$dir/benchstat.txt" \
	-command "cd bench && ${quick}${cmdtext}" \
	-note "$note" \
	"$dir"/run-*.txt
echo "README.md updated from $runs run(s)" >&2
if [ -n "$failed" ]; then
	echo "run.sh: a benchmark failed in run(s)${failed}" >&2
	exit 1
fi
