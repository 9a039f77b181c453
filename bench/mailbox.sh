#!/usr/bin/env bash
# Measures the mailbox tools over a generated DirectAdmin tree of
# 1,000,000 mailboxes on 10,000 domains (100 each, their mail directories,
# and 900 planted mailboxes over 12 local parts): wall time and peak
# memory (maximum resident set size, from /usr/bin/time -v) of the built
# binary for each step of the Day B procedure, the removal of the 900 and
# its restore included. The tree is generated once
# (several minutes on a disk, about one on a tmpfs) and read with a warm
# page cache, as a second audit on the day would be.
#
#   ./bench/mailbox.sh
#
# Environment:
#   DOMAINS=10000 BOXES=100   size of the tree
#   BENCH_DIR=/dev/shm        where to generate it (a tmpfs when there is one)
#   GOBENCH=1                 also run "go test -bench BenchmarkAudit" (it
#                             generates its own tree again)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DOMAINS=${DOMAINS:-10000} BOXES=${BOXES:-100}
if [ -z "${BENCH_DIR:-}" ]; then
	BENCH_DIR=/tmp
	[ -d /dev/shm ] && BENCH_DIR=/dev/shm
fi
[ -x /usr/bin/time ] || { echo "bench/mailbox.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

tmp=$(mktemp -d "$BENCH_DIR/mailwarden-mailbox-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/mailwarden" ./cmd/mailwarden
go build -o "$tmp/mailboxgen" ./bench/cmd/mailboxgen

echo "generating $DOMAINS domains x $BOXES mailboxes + 900 planted in $tmp ..."
"$tmp/mailboxgen" -dir "$tmp/tree" -domains "$DOMAINS" -boxes "$BOXES" -bogus 900 >"$tmp/tree.txt"
read -r vroot vhome <"$tmp/tree.txt"
flags=(--root "$vroot" --home "$vhome" --data "$tmp/data")

# measure NAME ARGS...: runs "mailwarden mailbox ARGS" and prints its
# wall time and peak RSS; stdout goes to $tmp/NAME.out.
measure() {
	local name=$1; shift
	set +e
	/usr/bin/time -v "$tmp/mailwarden" mailbox "$@" "${flags[@]}" >"$tmp/$name.out" 2>"$tmp/$name.time"
	local rc=$?
	set -e
	local wall rss
	wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/$name.time")
	rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/$name.time")
	printf '%-34s exit %d  wall %8s  peak RSS %5d MiB\n' "$name" "$rc" "$wall" $((rss / 1024))
}

echo
echo "mailwarden mailbox, $(nproc) cores, $(go env GOVERSION), tree in $BENCH_DIR:"
# The first read fills the page cache; the figures that follow are warm.
measure "audit --json (first read)" audit --json --no-snapshot
measure "audit --json" audit --json --no-snapshot
measure "audit --json" audit --json --no-snapshot
measure "audit (table)" audit --no-snapshot
measure "snapshot" snapshot
measure "audit --json, with snapshot" audit --json
measure "remove --from-audit (dry run)" remove --from-audit "$tmp/audit --json.out" --force
measure "remove --from-audit --apply" remove --from-audit "$tmp/audit --json.out" --force --apply
measure "restore latest" restore latest
suspect=$(grep -c '"suspect":true' "$tmp/audit --json.out" || true)
size=$(du -h "$tmp/audit --json.out" | cut -f1)
echo "audit JSON: $size; $suspect mailboxes suspect without a snapshot (900 planted, in one burst)"

if [ "${GOBENCH:-}" = 1 ]; then
	echo
	MAILBOX_BENCH_DIR=$BENCH_DIR MAILBOX_BENCH_DOMAINS=$DOMAINS go test -run '^$' -bench BenchmarkAudit -benchtime 3x ./internal/mailbox/
fi
