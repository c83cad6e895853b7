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
for i in $(seq 1 "$runs"); do
	echo "== run $i of $runs: $cmdtext" >&2
	echo "$(date -u +%FT%TZ) start run $i, loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$dir/conditions.txt"
	"${cmd[@]}" | tee "$dir/run-$i.txt"
	echo "$(date -u +%FT%TZ) end run $i, loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$dir/conditions.txt"
done

cat "$dir"/run-*.txt >"$dir/all.txt"
go tool benchstat "$dir/all.txt" >"$dir/benchstat.txt"
quick=""
if [ -n "${BENCH_QUICK:-}" ]; then quick="BENCH_QUICK=1 "; fi
loads=$(grep -o 'loadavg [0-9. ]*' "$dir/conditions.txt" | cut -d' ' -f2 | paste -sd' ' -)
go run ./cmd/benchreport -readme README.md -benchstat "$dir/benchstat.txt" \
	-command "cd bench && ${quick}${cmdtext}" \
	-note "1-minute load average at the start and end of each run: ${loads} (the machine is shared)" \
	"$dir"/run-*.txt
echo "README.md updated from $runs run(s)" >&2
