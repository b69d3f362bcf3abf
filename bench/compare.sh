#!/usr/bin/env bash
# The whole-system comparison: etcd's own `benchmark` workloads against two setups on the same
# disk, all durable, then one table of req/s, ratio, p99 and CPU per request.
#
# Both setups run side by side for the whole comparison, and each workload runs against one and
# then the other, round after round (COMPARE_ROUNDS, default 3; the order flips every round), so
# a slow minute of this shared machine lands on both: the table gives each figure's median over
# the rounds and each round's own ratio.
#
#   bash bench/compare.sh [SETUP]
#     single      (default) one etcd (fsync on) against one kvjournal member on its embedded
#                 journal; first 100,000 keys with 256-byte values (load-100k) and each server's
#                 RSS, then the standard set (../shared/tools/reference-etcd.sh list) and
#                 lease-keepalive-streams: etcd clientv3's KeepAlive shape (1,000 leases renewed
#                 over 10 long-lived streams, 5 s; bench/KvJournal.LoadHarness lease-streams)
#     replicated  a 3-member etcd cluster against 3 kvjournal members on a 3-node NATS JetStream
#                 stream (R3, sync_interval always): put at 1 and 1,000 clients, txn-put and
#                 linearizable range at 1,000 clients, the clients spread over the members
#     nats-r1     one kvjournal member on its embedded journal against one member on a single
#                 nats-server (R1): what the journal service costs; put at 1 and 1,000 clients
#   ETCDREF_QUICK=1 bash bench/compare.sh ...   a tenth of the requests (a smoke run)
#   COMPARE_ROUNDS=1 bash bench/compare.sh ...   one round (a third of the time)
#   COMPARE_WORKLOADS="put-conc lease-keepalive" bash bench/compare.sh ...   only these workloads,
#                 without the load and RSS step (for profiling one path)
#
# Server CPU per request counts every process of a setup (members and nats-server nodes).
# Loopback only; every run is bounded by the request counts and a per-benchmark timeout; every
# process is stopped by PID.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ref="$root/../shared/tools/reference-etcd.sh"
export ETCDREF_HOME=${ETCDREF_HOME:-/tmp/etcdref}
bash "$root/tools/install-reference-etcd.sh" >&2
[ -x "$ETCDREF_HOME/bin/benchmark" ] || bash "$ref" build >&2
# The native executable that ships (`dotnet publish`: AOT-compiled, no JIT).
dotnet publish "$root/src/KvJournal.Server" -c Release -o "$root/artifacts/kvjournal" -v quiet -nologo >&2
# The client of lease-keepalive-streams (etcd's benchmark tool has no clientv3 KeepAlive shape).
dotnet build "$root/bench/KvJournal.LoadHarness" -c Release -o "$root/artifacts/loadharness" -v quiet -nologo >&2
harness="$root/artifacts/loadharness/KvJournal.LoadHarness.dll"

work=$(mktemp -d /tmp/kvjournal-compare.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

setup=${1:-single}
case "$setup" in
single)     workloads="$(bash "$ref" list | awk '$1 != "load-100k" { print $1 }') lease-keepalive-streams"; load=1 ;;
replicated) workloads="put-seq put-conc txn-put-conc range-l-conc"; load=0 ;;
nats-r1)    workloads="put-seq put-conc"; load=0 ;;
*) echo "usage: compare.sh [single|replicated|nats-r1]" >&2; exit 2 ;;
esac
if [ -n "${COMPARE_WORKLOADS:-}" ]; then workloads=$COMPARE_WORKLOADS; load=0; fi
rounds=${COMPARE_ROUNDS:-3}
if [ "$setup" != single ]; then
    bash "$root/tools/install-nats-server.sh" >&2
fi

# A free loopback port (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user + system) of this shell's finished children, the benchmark client among them:
# client_mark records them (`times` must run in this shell; a $(...) subshell has its own children),
# client_cpu reads the last mark.
client_mark() { times > "$work/times.txt"; }
client_cpu() { awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }' "$work/times.txt"; }
# CPU seconds (user + system) the given processes have used so far, together.
server_cpu() { local p t=0; for p in "$@"; do t=$(awk -v hz="$(getconf CLK_TCK)" -v t="$t" '{ print t + ($14 + $15) / hz }' "/proc/$p/stat"); done; echo "$t"; }

# load SIDE ENDPOINTS PID...: the 100,000-key load, then the first server's RSS, into $work/SIDE.rss.txt.
load() {
    local side=$1 endpoints=$2; shift 2
    bash "$ref" bench "$endpoints" load-100k > "$work/$side.load.txt"
    bash "$ref" rss "$1" > "$work/$side.rss.txt"
}

# measure ROUND SIDE WORKLOAD ENDPOINTS PID...: one run of a workload against one setup, appended
# to $work/runs.txt as "ROUND SIDE NAME req/s avg_ms p99_ms errors server_cpu client_cpu" (CPU in
# µs per request; "-" on the watch benchmark's rows, which are not one request each). The client
# shares the two cores with the servers, so CPU per request is what tells the servers' costs apart
# when req/s is bounded by the cores.
measure() {
    local round=$1 side=$2 w=$3 endpoints=$4 s0 s1 c0 c1 out rows; shift 4
    s0=$(server_cpu "$@"); client_mark; c0=$(client_cpu)
    if [ "$w" = lease-keepalive-streams ]; then
        out="$work/$side.$w.$round.txt"
        local first=${endpoints%%,*}
        timeout 120 dotnet "$harness" lease-streams --port "${first##*:}" > "$out"
        rows=$(tr '\r' '\n' < "$out" | awk -v name="$w" '/Requests\/sec:/ { r = $2 } /^ *Average:/ { a = $2 } /^ *99% in/ { p = $3 }
            END { printf "%s %.1f %.3f %.3f 0\n", name, r, a * 1000, p * 1000 }')
    else
        bash "$ref" bench "$endpoints" "$w" > "$work/bench.txt"
        out=$(sed -n 's/.* logs=//p' "$work/bench.txt")/$w.txt
        rows=$(grep -v '^#' "$work/bench.txt")
    fi
    s1=$(server_cpu "$@"); client_mark; c1=$(client_cpu)
    # requests = the report's first Total (seconds) x its first Requests/sec (the puts, for watch-latency)
    local cpu
    cpu=$(tr '\r' '\n' < "$out" | awk -v s="$s0" -v S="$s1" -v c="$c0" -v C="$c1" '
        /Total:/ && !t { t = $2 } /Requests\/sec:/ && !r { r = $2 }
        END { n = t * r; if (n > 0) printf "%.1f %.1f", (S - s) / n * 1e6, (C - c) / n * 1e6; else print "- -" }')
    echo "$rows" | awk -v round="$round" -v side="$side" -v w="$w" -v cpu="$cpu" '
        NF { printf "%s %s %s %s %s %s %s %s\n", round, side, $1, $2, $3, $4, $5, ($1 == w ? cpu : "- -") }' >> "$work/runs.txt"
}

# wait_healthy PID URL LOG: until URL/health answers (or the process exits).
wait_healthy() {
    local _
    for _ in $(seq 1 300); do
        curl -sf "$2/health" >/dev/null 2>&1 && return 0
        kill -0 "$1" 2>/dev/null || { cat "$3" >&2; exit 1; }
        sleep 0.1
    done
    echo "compare: $2 not healthy after 30 s" >&2; cat "$3" >&2; exit 1
}

# start_etcd N: N etcd members (fsync on, one cluster); sets endpoints and server_pids.
start_etcd() {
    local n=$1 i cluster="" ports=() peers=()
    endpoints=""; server_pids=()
    for i in $(seq 1 "$n"); do ports+=("$(free_port)"); peers+=("$(free_port)"); cluster+="e$i=http://127.0.0.1:${peers[i-1]},"; done
    for i in $(seq 1 "$n"); do
        setsid "$ETCDREF_HOME/bin/etcd" --name "e$i" --data-dir "$work/etcd$i" --log-level error \
            --listen-client-urls "http://127.0.0.1:${ports[i-1]}" --advertise-client-urls "http://127.0.0.1:${ports[i-1]}" \
            --listen-peer-urls "http://127.0.0.1:${peers[i-1]}" --initial-advertise-peer-urls "http://127.0.0.1:${peers[i-1]}" \
            --initial-cluster "${cluster%,}" --initial-cluster-state new </dev/null > "$work/etcd$i.log" 2>&1 &
        pids+=("$!"); server_pids+=("$!"); endpoints+="127.0.0.1:${ports[i-1]},"
    done
    endpoints=${endpoints%,}
    for i in $(seq 1 "$n"); do wait_healthy "${server_pids[i-1]}" "http://127.0.0.1:${ports[i-1]}" "$work/etcd$i.log"; done
}

# start_kvjournal N [JOURNAL_ENDPOINTS REPLICAS]: N members (the native executable), on the
# embedded journal or on NATS; sets endpoints and server_pids (start_nats put the nodes' there).
start_kvjournal() {
    local n=$1 journal=${2:-} replicas=${3:-3} i port
    endpoints=""
    for i in $(seq 1 "$n"); do
        port=$(free_port)
        "$root/artifacts/kvjournal/kvjournal" --name "m$i" --data-dir "$work/kvjournal$i" \
            ${journal:+--journal-endpoints "$journal" --journal-replicas "$replicas"} \
            --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
            --log-level warn > "$work/kvjournal$i.log" 2>&1 &
        pids+=("$!"); server_pids+=("$!"); endpoints+="127.0.0.1:$port,"
        wait_healthy "$!" "http://127.0.0.1:$port" "$work/kvjournal$i.log"
    done
    endpoints=${endpoints%,}
}

# start_nats N: N nats-server nodes (tools/nats-cluster.sh, ports 4222...); sets journal and server_pids.
start_nats() {
    journal=$(bash "$root/tools/nats-cluster.sh" start "$work/nats" "$1")
    server_pids=(); local f; for f in "$work"/nats/n*.pid; do pids+=("$(cat "$f")"); server_pids+=("$(cat "$f")"); done
}

stop_all() { local p; for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
             for p in "${server_pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done; }

# Both setups up, side by side, for the whole comparison: a_* and b_* keep their endpoints and PIDs.
case "$setup" in
single)
    a=etcd; b=KvJournal
    start_etcd 1; a_endpoints=$endpoints; a_pids=("${server_pids[@]}")
    server_pids=(); start_kvjournal 1; b_endpoints=$endpoints; b_pids=("${server_pids[@]}") ;;
replicated)
    a="etcd, 3 members"; b="KvJournal, 3 members on NATS R3"
    start_etcd 3; a_endpoints=$endpoints; a_pids=("${server_pids[@]}")
    start_nats 3; start_kvjournal 3 "$journal"; b_endpoints=$endpoints; b_pids=("${server_pids[@]}") ;;
nats-r1)
    a="KvJournal, embedded journal"; b="KvJournal on NATS R1"
    server_pids=(); start_kvjournal 1; a_endpoints=$endpoints; a_pids=("${server_pids[@]}")
    start_nats 1; start_kvjournal 1 "$journal" 1; b_endpoints=$endpoints; b_pids=("${server_pids[@]}") ;;
esac

if [ "$load" = 1 ]; then
    load a "$a_endpoints" "${a_pids[@]}"; load b "$b_endpoints" "${b_pids[@]}"
fi
: > "$work/runs.txt"
for round in $(seq 1 "$rounds"); do
    for w in $workloads; do
        for side in $( [ $((round % 2)) = 1 ] && echo "a b" || echo "b a"); do
            if [ "$side" = a ]; then measure "$round" a "$w" "$a_endpoints" "${a_pids[@]}"
            else measure "$round" b "$w" "$b_endpoints" "${b_pids[@]}"; fi
        done
    done
    echo "compare: round $round of $rounds done" >&2
done
server_pids=("${a_pids[@]}" "${b_pids[@]}"); stop_all
if [ "$setup" != single ]; then bash "$root/tools/nats-cluster.sh" stop "$work/nats"; fi

echo "# $(date -u +%F) commit $(git -C "$root" rev-parse --short HEAD) setup=$setup quick=${ETCDREF_QUICK:-0} rounds=$rounds $(nproc) cores $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
# Medians over the rounds; the ratio is B's median over A's, with each round's own ratio after it.
python3 - "$work/runs.txt" "$a" "$b" <<'PY'
import statistics, sys
runs, a, b = sys.argv[1], sys.argv[2], sys.argv[3]
rows, order = {}, []
for line in open(runs):
    r, side, name, rps, avg, p99, errors, scpu, ccpu = line.split()
    if name not in rows: rows[name] = {"a": [], "b": []}; order.append(name)
    rows[name][side].append((int(r), float(rps), float(p99), scpu, ccpu))
def med(values): return statistics.median(values) if values else float("nan")
def cpu(runs, i):
    v = [float(x[i]) for x in runs if x[i] != "-"]
    return med(v) if v else None
print(f"| workload | {a} req/s | {b} req/s | ratio (each round) | {a} p99 ms | {b} p99 ms | server CPU µs/req {a} / {b} | server CPU ratio | client CPU µs/req {a} / {b} |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
for name in order:
    A, B = rows[name]["a"], rows[name]["b"]
    ra, rb = med([x[1] for x in A]), med([x[1] for x in B])
    by_round = {x[0]: x[1] for x in A}
    each = " / ".join(f"{x[1] / by_round[x[0]]:.2f}" for x in sorted(B) if by_round.get(x[0]))
    sa, sb, ca, cb = cpu(A, 3), cpu(B, 3), cpu(A, 4), cpu(B, 4)
    scpu = f"{sa:.1f} / {sb:.1f}" if sa and sb else ""
    sratio = f"{sb / sa:.2f}" if sa and sb else ""
    ccpu = f"{ca:.1f} / {cb:.1f}" if ca and cb else ""
    print(f"| {name} | {ra:.0f} | {rb:.0f} | {rb / ra if ra else 0:.2f} ({each}) | {med([x[2] for x in A]):.2f} | {med([x[2] for x in B]):.2f} | {scpu} | {sratio} | {ccpu} |")
PY
if [ "$load" = 1 ]; then
    # peak RSS after the 100,000-key load: the VmHWM line of reference-etcd.sh rss
    a_rss=$(awk '/^VmHWM:/ {print $2}' "$work/a.rss.txt")
    b_rss=$(awk '/^VmHWM:/ {print $2}' "$work/b.rss.txt")
    awk -v e="$a_rss" -v k="$b_rss" 'BEGIN { printf "| peak RSS after 100,000 keys (MiB) | %.0f | %.0f | %.2f | | | | | |\n", e, k, (e > 0 ? k / e : 0) }'
fi
echo
echo "Each run (round, setup a=$a b=$b, workload, req/s, avg ms, p99 ms, errors, server and client CPU µs/req):"
sed 's/^/    /' "$work/runs.txt"
