#!/usr/bin/env bash
# The whole-system comparison: etcd's own `benchmark` workloads against two setups in turn, on the
# same disk, all durable, then one table of req/s, ratio, p99 and CPU per request.
#
#   bash bench/compare.sh [SETUP]
#     single      (default) one etcd (fsync on) against one kvjournal member on its embedded
#                 journal; first 100,000 keys with 256-byte values (load-100k) and each server's
#                 RSS, then the standard set (../shared/tools/reference-etcd.sh list)
#     replicated  a 3-member etcd cluster against 3 kvjournal members on a 3-node NATS JetStream
#                 stream (R3, sync_interval always): put at 1 and 1,000 clients, txn-put and
#                 linearizable range at 1,000 clients, the clients spread over the members
#     nats-r1     one kvjournal member on its embedded journal against one member on a single
#                 nats-server (R1): what the journal service costs; put at 1 and 1,000 clients
#   ETCDREF_QUICK=1 bash bench/compare.sh ...   a tenth of the requests (a smoke run)
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

work=$(mktemp -d /tmp/kvjournal-compare.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

setup=${1:-single}
case "$setup" in
single)     workloads=$(bash "$ref" list | awk '$1 != "load-100k" { print $1 }'); load=1 ;;
replicated) workloads="put-seq put-conc txn-put-conc range-l-conc"; load=0 ;;
nats-r1)    workloads="put-seq put-conc"; load=0 ;;
*) echo "usage: compare.sh [single|replicated|nats-r1]" >&2; exit 2 ;;
esac
if [ -n "${COMPARE_WORKLOADS:-}" ]; then workloads=$COMPARE_WORKLOADS; load=0; fi
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

# run NAME ENDPOINTS PID...: with load=1 first load and RSS, then the workloads one at a time,
# into $work/NAME.txt (etcd's benchmark rows) and $work/NAME.cpu.txt (workload, server and client
# CPU µs per request). The client shares the two cores with the servers, so CPU per request is
# what tells the servers' costs apart when req/s is bounded by the cores.
run() {
    local name=$1 endpoints=$2 w s0 s1 c0 c1 out; shift 2
    if [ "$load" = 1 ]; then
        bash "$ref" bench "$endpoints" load-100k > "$work/$name.load.txt"
        bash "$ref" rss "$1" > "$work/$name.rss.txt"
    fi
    : > "$work/$name.txt"; : > "$work/$name.cpu.txt"
    for w in $workloads; do
        s0=$(server_cpu "$@"); client_mark; c0=$(client_cpu)
        bash "$ref" bench "$endpoints" "$w" > "$work/$name.$w.txt"
        s1=$(server_cpu "$@"); client_mark; c1=$(client_cpu)
        out=$(sed -n 's/.* logs=//p' "$work/$name.$w.txt")/$w.txt
        grep -v '^#' "$work/$name.$w.txt" >> "$work/$name.txt"
        # requests = the tool's first Total (seconds) x its first Requests/sec (the puts, for watch-latency)
        awk -v w="$w" -v s="$s0" -v S="$s1" -v c="$c0" -v C="$c1" '
            /Total:/ && !t { t = $2 } /Requests\/sec:/ && !r { r = $2 }
            END { n = t * r; if (n > 0) printf "%s %.1f %.1f\n", w, (S - s) / n * 1e6, (C - c) / n * 1e6 }' \
            <(tr '\r' '\n' < "$out") >> "$work/$name.cpu.txt"
    done
    echo "$name: done" >&2
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

case "$setup" in
single)
    a=etcd; b=KvJournal
    start_etcd 1; run "$a" "$endpoints" "${server_pids[@]}"; stop_all
    server_pids=(); start_kvjournal 1; run "$b" "$endpoints" "${server_pids[@]}"; stop_all ;;
replicated)
    a="etcd, 3 members"; b="KvJournal, 3 members on NATS R3"
    start_etcd 3; run "$a" "$endpoints" "${server_pids[@]}"; stop_all
    start_nats 3; start_kvjournal 3 "$journal"; run "$b" "$endpoints" "${server_pids[@]}"; stop_all
    bash "$root/tools/nats-cluster.sh" stop "$work/nats" ;;
nats-r1)
    a="KvJournal, embedded journal"; b="KvJournal on NATS R1"
    server_pids=(); start_kvjournal 1; run "$a" "$endpoints" "${server_pids[@]}"; stop_all
    start_nats 1; start_kvjournal 1 "$journal" 1; run "$b" "$endpoints" "${server_pids[@]}"; stop_all
    bash "$root/tools/nats-cluster.sh" stop "$work/nats" ;;
esac

echo "# $(date -u +%F) commit $(git -C "$root" rev-parse --short HEAD) setup=$setup quick=${ETCDREF_QUICK:-0} $(nproc) cores $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "| workload | $a req/s | $b req/s | ratio | $a p99 ms | $b p99 ms | server CPU µs/req $a / $b | client CPU µs/req $a / $b |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# Rows in the benchmark set's order; req/s is column 2 and p99 column 4 of reference-etcd.sh bench.
# The watch benchmark's two rows (watch-create, watch-events) have no per-request CPU.
awk 'FNR == 1 { f++ }
     f == 1 { ecpu[$1] = $2 " / "; ecl[$1] = $3 " / "; next }
     f == 2 { kcpu[$1] = $2; kcl[$1] = $3; next }
     f == 3 { rps[$1] = $2; p99[$1] = $4; order[++n] = $1; next }
     { krps[$1] = $2; kp99[$1] = $4 }
     END { for (i = 1; i <= n; i++) { w = order[i]
             printf "| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %s | %s |\n", w, rps[w], krps[w], (rps[w] > 0 ? krps[w] / rps[w] : 0), p99[w], kp99[w],
                 (w in kcpu ? ecpu[w] kcpu[w] : ""), (w in kcl ? ecl[w] kcl[w] : "") } }' \
    "$work/$a.cpu.txt" "$work/$b.cpu.txt" "$work/$a.txt" "$work/$b.txt"
if [ "$load" = 1 ]; then
    # peak RSS after the 100,000-key load: the VmHWM line of reference-etcd.sh rss
    etcd_rss=$(awk '/^VmHWM:/ {print $2}' "$work/$a.rss.txt")
    kvj_rss=$(awk '/^VmHWM:/ {print $2}' "$work/$b.rss.txt")
    awk -v e="$etcd_rss" -v k="$kvj_rss" 'BEGIN { printf "| peak RSS after 100,000 keys (MiB) | %.0f | %.0f | %.2f | | | | |\n", e, k, (e > 0 ? k / e : 0) }'
fi
