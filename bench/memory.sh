#!/usr/bin/env bash
# Measures the daemon's memory after a burst of new greylist triplets,
# the figure issue 16 asks about: the built binary with no config file
# and the embedded store in a fresh data directory, N policy requests of
# new triplets over 4 connections (mwload), then VmRSS one second after
# the burst and once a second for WAIT seconds more, as top would show
# it on the quiet afternoon after, and the peak (VmHWM) the burst
# reached.
#
#   ./bench/memory.sh
#
# Environment:
#   N=100000        requests, each a new triplet
#   WAIT=15         seconds to watch after the burst
#   RUNS=3          runs, each with a fresh data directory
#   GOGC, GOMEMLIMIT  passed to the daemon when set
#   BIN=path        measure this mailwarden binary instead of building one
# It uses the default ports (policy 127.0.0.1:10023, HTTP 8025) and
# refuses to start if they are taken.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
N=${N:-100000} WAIT=${WAIT:-15} RUNS=${RUNS:-3}
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
for port in 10023 10029 8025; do
	if ss -ltnH "sport = :$port" | grep -q .; then
		echo "bench/memory.sh: port $port is taken; stop what listens there first" >&2
		exit 1
	fi
done
if [ -n "${BIN:-}" ]; then
	cp "$BIN" "$tmp/mailwarden"
else
	go build -o "$tmp/mailwarden" ./cmd/mailwarden
fi
go build -o "$tmp/mwload" ./bench/cmd/mwload

rss() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }

echo "${BIN:-commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)}, N=$N, GOGC=${GOGC:-default} GOMEMLIMIT=${GOMEMLIMIT:-default}"
for run in $(seq "$RUNS"); do
	rm -rf "$tmp/data"
	"$tmp/mailwarden" serve --data "$tmp/data" >"$tmp/log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		ss -ltnH 'sport = :10023' | grep -q . && break
		sleep 0.1
	done
	sleep 1
	idle=$(rss "$pid")
	load=$("$tmp/mwload" policy -addr 127.0.0.1:10023 -n "$N" -c 4 -uniq 1000000000000 | tail -1)
	sleep 1
	after=$(rss "$pid")
	cpu=$(awk '{printf "%.2f", ($14+$15)/100}' "/proc/$pid/stat")
	peak=$(awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$pid/status")
	watch= least=$after
	for _ in $(seq "$WAIT"); do
		sleep 1
		r=$(rss "$pid")
		watch="$watch $r"
		least=$(awk -v a="$least" -v b="$r" 'BEGIN{print (b<a)?b:a}')
	done
	parts=$(awk '/^Rss(Anon|File)/{printf " %s %.1f MB", $1, $2/1024}' "/proc/$pid/status"; awk '/^AnonHugePages/{printf " %s %.1f MB", $1, $2/1024}' "/proc/$pid/smaps_rollup")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=
	echo "run $run: idle ${idle} MB; peak ${peak} MB; after the burst ${after} MB; then each second:${watch}; least ${least} MB (at the end:${parts}); daemon CPU ${cpu} s"
	echo "  ${load%% verdicts=*}"
done
