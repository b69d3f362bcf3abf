#!/usr/bin/env bash
# The whole-system comparison: etcd's own `benchmark` workloads against the reference etcd and a
# kvjournal member in turn, on the same disk, both durable (etcd with fsync, kvjournal with its
# embedded journal), then one table of req/s, ratio and p99.
#
#   bash bench/compare.sh            full request counts (about 5 minutes on 2 cores)
#   ETCDREF_QUICK=1 bash bench/compare.sh   a tenth of them (a smoke run)
#
# Each server first gets 100,000 keys with 256-byte values (load-100k) and its RSS is read, then
# runs the standard set (../shared/tools/reference-etcd.sh list). Loopback only; every run is
# bounded by the request counts and a per-benchmark timeout; both servers are stopped by PID.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ref="$root/../shared/tools/reference-etcd.sh"
export ETCDREF_HOME=${ETCDREF_HOME:-/tmp/etcdref}
bash "$root/tools/install-reference-etcd.sh" >&2
[ -x "$ETCDREF_HOME/bin/benchmark" ] || bash "$ref" build >&2
dotnet build "$root/src/KvJournal.Server" -c Release -v quiet -nologo >&2

work=$(mktemp -d /tmp/kvjournal-compare.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A free loopback port (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run NAME PORT PID: load, RSS, then the benchmark set, into $work/NAME.txt
run() {
    local name=$1 port=$2 pid=$3
    bash "$ref" bench "127.0.0.1:$port" load-100k > "$work/$name.load.txt"
    bash "$ref" rss "$pid" > "$work/$name.rss.txt"
    bash "$ref" bench "127.0.0.1:$port" > "$work/$name.txt"
    echo "$name: done ($(tr '\n' ' ' < "$work/$name.rss.txt"))" >&2
}

port=$(free_port)
export ETCDREF_PEER_PORT; ETCDREF_PEER_PORT=$(free_port)
etcd_pid=$(bash "$ref" start "$port" "$work/etcd")
pids+=("$etcd_pid")
run etcd "$port" "$etcd_pid"
bash "$ref" stop "$etcd_pid" >&2

port=$(free_port)
dotnet "$root/src/KvJournal.Server/bin/Release/net10.0/kvjournal.dll" --data-dir "$work/kvjournal" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --log-level warn > "$work/kvjournal.log" 2>&1 &
kvj_pid=$!
pids+=("$kvj_pid")
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$kvj_pid" 2>/dev/null || { cat "$work/kvjournal.log" >&2; exit 1; }
    sleep 0.1
done
run kvjournal "$port" "$kvj_pid"
kill "$kvj_pid"; wait "$kvj_pid" 2>/dev/null || true

echo "# $(date -u +%F) commit $(git -C "$root" rev-parse --short HEAD) quick=${ETCDREF_QUICK:-0} $(nproc) cores $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "| workload | etcd req/s | KvJournal req/s | ratio | etcd p99 ms | KvJournal p99 ms |"
echo "|---|---:|---:|---:|---:|---:|"
# Rows in the benchmark set's order; req/s is column 2 and p99 column 4 of reference-etcd.sh bench.
awk 'FNR == NR { if ($1 !~ /^#/) { rps[$1] = $2; p99[$1] = $4; order[++n] = $1 } next }
     $1 !~ /^#/ { krps[$1] = $2; kp99[$1] = $4 }
     END { for (i = 1; i <= n; i++) { w = order[i]; printf "| %s | %.0f | %.0f | %.2f | %.2f | %.2f |\n", w, rps[w], krps[w], (rps[w] > 0 ? krps[w] / rps[w] : 0), p99[w], kp99[w] } }' \
    "$work/etcd.txt" "$work/kvjournal.txt"
# peak RSS after the 100,000-key load: the VmHWM line of reference-etcd.sh rss
etcd_rss=$(awk '/^VmHWM:/ {print $2}' "$work/etcd.rss.txt")
kvj_rss=$(awk '/^VmHWM:/ {print $2}' "$work/kvjournal.rss.txt")
awk -v e="$etcd_rss" -v k="$kvj_rss" 'BEGIN { printf "| peak RSS after 100,000 keys (MiB) | %.0f | %.0f | %.2f | | |\n", e, k, (e > 0 ? k / e : 0) }'
