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
# The native executable that ships (`dotnet publish`: AOT-compiled, no JIT).
dotnet publish "$root/src/KvJournal.Server" -c Release -o "$root/artifacts/kvjournal" -v quiet -nologo >&2

work=$(mktemp -d /tmp/kvjournal-compare.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A free loopback port (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user + system) of this shell's finished children, the benchmark client among them:
# client_mark records them (`times` must run in this shell; a $(...) subshell has its own children),
# client_cpu reads the last mark.
client_mark() { times > "$work/times.txt"; }
client_cpu() { awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }' "$work/times.txt"; }
# CPU seconds (user + system) the server process has used so far.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# run NAME PORT PID: load, RSS, then the benchmark set one workload at a time, into $work/NAME.txt
# (etcd's benchmark rows) and $work/NAME.cpu.txt (workload, server and client CPU µs per request).
# The client shares the two cores with the server, so CPU per request is what tells the servers'
# costs apart when req/s is bounded by the cores.
run() {
    local name=$1 port=$2 pid=$3 w s0 s1 c0 c1 out
    bash "$ref" bench "127.0.0.1:$port" load-100k > "$work/$name.load.txt"
    bash "$ref" rss "$pid" > "$work/$name.rss.txt"
    : > "$work/$name.txt"; : > "$work/$name.cpu.txt"
    for w in $(bash "$ref" list | awk '$1 != "load-100k" { print $1 }'); do
        s0=$(server_cpu "$pid"); client_mark; c0=$(client_cpu)
        bash "$ref" bench "127.0.0.1:$port" "$w" > "$work/$name.$w.txt"
        s1=$(server_cpu "$pid"); client_mark; c1=$(client_cpu)
        out=$(sed -n 's/.* logs=//p' "$work/$name.$w.txt")/$w.txt
        grep -v '^#' "$work/$name.$w.txt" >> "$work/$name.txt"
        # requests = the tool's first Total (seconds) x its first Requests/sec (the puts, for watch-latency)
        awk -v w="$w" -v s="$s0" -v S="$s1" -v c="$c0" -v C="$c1" '
            /Total:/ && !t { t = $2 } /Requests\/sec:/ && !r { r = $2 }
            END { n = t * r; if (n > 0) printf "%s %.1f %.1f\n", w, (S - s) / n * 1e6, (C - c) / n * 1e6 }' \
            <(tr '\r' '\n' < "$out") >> "$work/$name.cpu.txt"
    done
    echo "$name: done ($(tr '\n' ' ' < "$work/$name.rss.txt"))" >&2
}

port=$(free_port)
export ETCDREF_PEER_PORT; ETCDREF_PEER_PORT=$(free_port)
etcd_pid=$(bash "$ref" start "$port" "$work/etcd")
pids+=("$etcd_pid")
run etcd "$port" "$etcd_pid"
bash "$ref" stop "$etcd_pid" >&2

port=$(free_port)
"$root/artifacts/kvjournal/kvjournal" --data-dir "$work/kvjournal" \
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
echo "| workload | etcd req/s | KvJournal req/s | ratio | etcd p99 ms | KvJournal p99 ms | server CPU µs/req etcd / KvJournal | client CPU µs/req etcd / KvJournal |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# Rows in the benchmark set's order; req/s is column 2 and p99 column 4 of reference-etcd.sh bench.
# The watch benchmark's two rows (watch-create, watch-events) have no per-request CPU.
awk 'FILENAME ~ /etcd\.cpu/ { ecpu[$1] = $2 " / "; ecl[$1] = $3 " / "; next }
     FILENAME ~ /kvjournal\.cpu/ { kcpu[$1] = $2; kcl[$1] = $3; next }
     FILENAME ~ /etcd\.txt/ { rps[$1] = $2; p99[$1] = $4; order[++n] = $1; next }
     { krps[$1] = $2; kp99[$1] = $4 }
     END { for (i = 1; i <= n; i++) { w = order[i]
             printf "| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %s | %s |\n", w, rps[w], krps[w], (rps[w] > 0 ? krps[w] / rps[w] : 0), p99[w], kp99[w],
                 (w in kcpu ? ecpu[w] kcpu[w] : ""), (w in kcl ? ecl[w] kcl[w] : "") } }' \
    "$work/etcd.cpu.txt" "$work/kvjournal.cpu.txt" "$work/etcd.txt" "$work/kvjournal.txt"
# peak RSS after the 100,000-key load: the VmHWM line of reference-etcd.sh rss
etcd_rss=$(awk '/^VmHWM:/ {print $2}' "$work/etcd.rss.txt")
kvj_rss=$(awk '/^VmHWM:/ {print $2}' "$work/kvjournal.rss.txt")
awk -v e="$etcd_rss" -v k="$kvj_rss" 'BEGIN { printf "| peak RSS after 100,000 keys (MiB) | %.0f | %.0f | %.2f | | | | |\n", e, k, (e > 0 ? k / e : 0) }'
