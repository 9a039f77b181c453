#!/usr/bin/env bash
# Measures mailwarden with its own load generator (bench/cmd/mwload) and,
# when the shared reference systems are available, the no-op milter and
# postgrey in the same run with the same client, then prints the ratios
# BENCHMARKS.md records. Loopback only.
#
#   ./bench/run.sh            (as root to start the reference systems)
#
# Environment:
#   ANCHORS=path   the script that starts the reference systems
#                  (default: ../shared/bench/anchors.sh from the repo root)
#   MILTER_N=4000 MILTER_C=8 SIZE=2048 POLICY_N=20000 POLICY_C=4 UNIQ=1000000
#
# It starts one mailwarden (the built binary, greylisting on with the
# default delay, its store in a temporary directory) on 127.0.0.1 ports
# 20023 (policy), 20029 (milter) and 28025 (http), clear of the reference
# systems' ports, and stops it by PID when done. The reference systems are
# shared: anchors.sh starts them once and leaves them running.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ANCHORS=${ANCHORS:-$root/../shared/bench/anchors.sh}
MILTER_N=${MILTER_N:-4000} MILTER_C=${MILTER_C:-8} SIZE=${SIZE:-2048}
POLICY_N=${POLICY_N:-20000} POLICY_C=${POLICY_C:-4} UNIQ=${UNIQ:-1000000}
MW_POLICY=127.0.0.1:20023 MW_MILTER=127.0.0.1:20029 MW_HTTP=127.0.0.1:28025
NOOP=127.0.0.1:17400 POSTGREY=127.0.0.1:10123
# A fresh seed for every load (postgrey's database outlives a run): every
# system gets triplets it has never seen, so each takes the same path, a
# new triplet recorded and deferred. Only the milter's second pass reuses
# its first pass's seed, on purpose. Policy runs come first, before any
# pass can auto-whitelist a client.
SEED=$(( $(date +%s) * 100 ))

tmp=$(mktemp -d /tmp/mailwarden-bench.XXXXXX)
mw_pid="" av_pid="" tr_pid=""
cleanup() {
	for p in $mw_pid $av_pid $tr_pid; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
up() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

say "# mailwarden benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
say "# machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(go version | cut -d' ' -f3-)"
say "# revision: $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"

timeout 300 go build -o bin/mailwarden ./cmd/mailwarden
timeout 300 go build -o bin/mwload ./bench/cmd/mwload
timeout 300 go build -o bin/trapload ./bench/trapload

for a in $MW_POLICY $MW_MILTER $MW_HTTP; do
	if up "$a"; then
		say "run.sh: $a is already in use; stop whatever listens there first" >&2
		exit 1
	fi
done
cat >"$tmp/mailwarden.yaml" <<EOF
data_dir: $tmp/data
listen:
  policy: $MW_POLICY
  milter: $MW_MILTER
  http: $MW_HTTP
log:
  level: warn
  mail_log: $tmp/mail.log
greylist:
  enabled: true
  # Short, so that a second milter pass over the same triplets passes
  # greylisting and runs every transaction to the end of the message.
  delay: 2s
# The outbound run's clients (172.x.y.z in the milter protocol only;
# nothing is dialled) are an internal site allowed to send as
# example.net, so freeze, latch, sender policy and rate limits all run on
# every message. The domain limit is raised so the load does not trip it.
sites:
  - name: bench
    networks: [172.0.0.0/8]
    contact: bench
    sender_domains: [example.net]
rate_limits:
  sender_domain: {messages: 10000000, recipients: 10000000, per: 1h}
EOF
bin/mailwarden serve --config "$tmp/mailwarden.yaml" >"$tmp/stdout.log" 2>"$tmp/daemon.log" &
mw_pid=$!
ready=""
for _ in $(seq 100); do
	if curl -fsS "http://$MW_HTTP/-/ready" >/dev/null 2>&1; then
		ready=yes
		break
	fi
	kill -0 "$mw_pid" 2>/dev/null || break
	sleep 0.2
done
if [ -z "$ready" ]; then
	say "run.sh: mailwarden did not become ready; its log:" >&2
	cat "$tmp/daemon.log" >&2
	exit 1
fi

anchors=""
if [ "$(id -u)" -eq 0 ] && [ -f "$ANCHORS" ]; then
	say "# starting the reference systems with $ANCHORS (may install Debian packages)"
	if timeout 1200 bash "$ANCHORS" >"$tmp/anchors.log" 2>&1 && up $NOOP && up $POSTGREY; then
		anchors=yes
	else
		say "run.sh: the reference systems did not start; see below. Measuring mailwarden alone." >&2
		tail -20 "$tmp/anchors.log" >&2
	fi
elif [ ! -f "$ANCHORS" ]; then
	say "# no reference systems: $ANCHORS not found"
else
	say "# no reference systems: starting them needs root"
fi

# load KIND NAME ADDR N C [FLAGS] prints the result line and leaves it in $line.
load() {
	local extra="${6:-}"
	[ "$1" = milter ] && extra="$extra -size $SIZE"
	# shellcheck disable=SC2086 # $extra holds whole flags and their values
	if ! line=$(timeout 600 bin/mwload "$1" -addr "$3" -n "$4" -c "$5" -uniq "$UNIQ" -seed "$SEED" $extra); then
		say "run.sh: $2 $1 load failed" >&2
		exit 1
	fi
	say "$2: $line"
}
# field LINE NAME prints a figure from a result line: rate in /s, p99 in ms.
field() {
	awk -v want="$2" '{
		for (i = 1; i <= NF; i++) {
			split($i, kv, "=")
			if (kv[1] != want) continue
			v = kv[2]
			if (want == "rate") { sub("/s", "", v); print v; exit }
			if (v ~ /ns$/) { sub("ns", "", v); print v / 1e6 }
			else if (v ~ /µs$/) { sub("µs", "", v); print v / 1e3 }
			else if (v ~ /ms$/) { sub("ms", "", v); print v + 0 }
			else if (v ~ /s$/) { sub("s", "", v); print v * 1e3 }
			exit
		}
	}' <<<"$1"
}

say "# policy: $POLICY_C connections, $POLICY_N requests in all"
load policy mailwarden $MW_POLICY "$POLICY_N" "$POLICY_C"
mw_policy=$line
if [ -n "$anchors" ]; then
	load policy postgrey $POSTGREY "$POLICY_N" "$POLICY_C"
	pg_policy=$line
fi

# The runs above saturate both cores, so their p99 is mostly queueing
# behind the load generator and the store's writer. Paced runs show the
# tail at set rates: postgrey's own maximum, and ten times it.
paced_rates="2000 10000"
[ -n "$anchors" ] && paced_rates="$(field "$pg_policy" rate) $(awk -v r="$(field "$pg_policy" rate)" 'BEGIN { printf "%d", r * 10 }')"
say "# policy, paced: $POLICY_C connections, latency from each send"
for r in $paced_rates; do
	SEED=$((SEED + 1)) # fresh triplets: each run takes the new-triplet path
	load policy "mailwarden@${r}/s" $MW_POLICY "$POLICY_N" "$POLICY_C" "-rate $r"
done

say "# milter: $MILTER_C sessions, $SIZE-byte bodies, $MILTER_N full transactions in all"
SEED=$((SEED + 1))
milter_start=$(date +%s.%N)
load milter mailwarden $MW_MILTER "$MILTER_N" "$MILTER_C"
mw_milter=$line
# New triplets end at RCPT with 451; the no-op milter reads every message
# to its end. The same triplets once the 2 s delay is over pass, and each
# transaction then runs to the end with its store update and X-Greylist
# header: the like-for-like comparison.
sleep "$(awk -v s="$milter_start" -v now="$(date +%s.%N)" 'BEGIN { w = s + 2.5 - now; print (w > 0 ? w : 0) }')"
load milter mailwarden-passing $MW_MILTER "$MILTER_N" "$MILTER_C"
mw_milter_pass=$line
if [ -n "$anchors" ]; then
	SEED=$((SEED + 1))
	load milter noopmilter $NOOP "$MILTER_N" "$MILTER_C"
	noop_milter=$line
fi
# Outbound: internal clients through the whole pipeline (freeze, latch,
# sender policy, rate limits; greylisting skips internal clients), every
# transaction to the end of the message.
SEED=$((SEED + 1))
load milter mailwarden-outbound $MW_MILTER "$MILTER_N" "$MILTER_C" "-client 172.x.y.z"
mw_milter_out=$line

# Antivirus: a second mailwarden scanning every message through the
# reference clamd (EICAR body signature only), greylisting off, against
# clamav-milter and rspamd on the same clamd, one message in ten infected.
if [ -n "$anchors" ]; then
	MW_AV=127.0.0.1:20129
	cat >"$tmp/av.yaml" <<AVCONF
data_dir: $tmp/avdata
listen: {policy: "", milter: "$MW_AV", http: "127.0.0.1:28125"}
log: {level: warn, mail_log: $tmp/av-mail.log}
greylist: {enabled: false}
# No scan cache: every message goes to clamd, as with the others.
antivirus: {enabled: true, servers: ["tcp:127.0.0.1:13310"], cache: {enabled: false}}
AVCONF
	bin/mailwarden serve --config "$tmp/av.yaml" >/dev/null 2>"$tmp/av-daemon.log" &
	av_pid=$!
	for _ in $(seq 100); do curl -fsS "http://127.0.0.1:28125/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
	say "# antivirus: $MILTER_C sessions, $SIZE-byte bodies, 10% with a base64 EICAR attachment"
	SEED=$((SEED + 1))
	load milter mailwarden-av $MW_AV "$MILTER_N" "$MILTER_C" "-virus 0.1"
	av_mw=$line
	SEED=$((SEED + 1))
	load milter clamav-milter 127.0.0.1:17357 "$MILTER_N" "$MILTER_C" "-virus 0.1"
	av_cm=$line
	SEED=$((SEED + 1))
	load milter rspamd 127.0.0.1:11332 "$MILTER_N" "$MILTER_C" "-virus 0.1"
	av_rs=$line
fi
# Trap: a third mailwarden with only the worm trap on, flooded by
# trapload from 50 loopback addresses; its resident memory before and
# after shows what the flood costs. TRAP_N=20000 TRAP_C=32.
TRAP_N=${TRAP_N:-20000} TRAP_C=${TRAP_C:-32}
cat >"$tmp/trap.yaml" <<TRAPCONF
data_dir: $tmp/trapdata
listen: {policy: "", milter: "127.0.0.1:20229", http: "127.0.0.1:28225"}
log: {level: warn, mail_log: $tmp/trap-mail.log}
greylist: {enabled: false}
internal_networks: [127.0.76.0/24]
trap: {enabled: true, listen: "127.0.0.1:20025", max_conns: 256, max_per_ip: 8, flush_interval: 1s}
TRAPCONF
bin/mailwarden serve --config "$tmp/trap.yaml" >/dev/null 2>"$tmp/trap-daemon.log" &
tr_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:28225/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/^VmRSS:/ { print $2 " kB" }' "/proc/$tr_pid/status"; }
say "# trap: $TRAP_C connections at a time from 50 addresses, $TRAP_N HELO + MAIL FROM conversations in all"
say "trap daemon VmRSS before: $(rss)"
if ! line=$(timeout 600 bin/trapload -addr 127.0.0.1:20025 -n "$TRAP_N" -c "$TRAP_C" -hosts 50); then
	say "run.sh: trap load failed" >&2
	exit 1
fi
say "mailwarden-trap: $line"
sleep 1.5 # one flush interval, so the hits are in the store
say "trap daemon VmRSS after: $(rss)"
kill "$tr_pid" && wait "$tr_pid" 2>/dev/null || true
tr_pid=""

mw_p99=$(field "$mw_policy" p99)
say "# ratios"
if [ -n "$anchors" ]; then
	awk -v a="$(field "$mw_milter" rate)" -v b="$(field "$noop_milter" rate)" \
		'BEGIN { printf "mailwarden/noop milter = %.2f (aim >= 0.8), new triplets (451 at RCPT)\n", a / b }'
	awk -v a="$(field "$mw_milter_pass" rate)" -v b="$(field "$noop_milter" rate)" \
		'BEGIN { printf "mailwarden/noop milter = %.2f (aim >= 0.8), passing triplets (whole message)\n", a / b }'
	awk -v a="$(field "$mw_milter_out" rate)" -v b="$(field "$noop_milter" rate)" \
		'BEGIN { printf "mailwarden/noop milter = %.2f (aim >= 0.75), outbound through the full pipeline (whole message)\n", a / b }'
	awk -v a="$(field "$mw_policy" rate)" -v b="$(field "$pg_policy" rate)" -v p="$mw_p99" \
		'BEGIN { printf "mailwarden/postgrey policy = %.1fx (aim >= 10), mailwarden policy p99 = %.3f ms (aim < 1 ms)\n", a / b, p }'
	awk -v a="$(field "$av_mw" rate)" -v b="$(field "$av_cm" rate)" -v c="$(field "$av_rs" rate)" -v p="$(field "$av_mw" p99)" \
		'BEGIN { printf "antivirus: mailwarden/clamav-milter = %.1fx (aim >= 5), mailwarden/rspamd = %.2fx (aim >= 1.5), mailwarden p99 = %.1f ms (aim < 20 ms)\n", a / b, a / c, p }'
else
	say "mailwarden/noop milter and mailwarden/postgrey policy: need the reference systems (run as root with $ANCHORS)"
	awk -v p="$mw_p99" 'BEGIN { printf "mailwarden policy p99 = %.3f ms (aim < 1 ms)\n", p }'
fi
if [ -s "$tmp/daemon.log" ]; then
	say "# mailwarden logged warnings or errors during the run:"
	head -5 "$tmp/daemon.log"
fi
