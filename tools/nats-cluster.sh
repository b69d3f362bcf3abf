#!/usr/bin/env bash
# Starts or stops a local NATS JetStream cluster on loopback: the replicated journal's home for
# trying KvJournal, its benchmarks and README. Each node fsyncs before it acknowledges
# (sync_interval: always): without it NATS acknowledges writes a crash can still lose.
#
#   tools/nats-cluster.sh start DIR [NODES]   NODES (default 3) nats-server processes, client ports
#                                             4222, 4223, ..., data and logs under DIR; prints the
#                                             --journal-endpoints value
#   tools/nats-cluster.sh stop DIR            stops the nodes started under DIR (by their PIDs)
#
# nats-server comes from $NATS_SERVER, else $NATS_HOME/bin (default /tmp/nats), where
# `../shared/tools/debian-package.sh /tmp/nats nats-server` puts Debian's 2.15 (bookworm's 2.9
# has no sync_interval).
set -euo pipefail
cmd=${1:?usage: nats-cluster.sh start|stop DIR [NODES]}
dir=${2:?usage: nats-cluster.sh start|stop DIR [NODES]}
nodes=${3:-3}
server=${NATS_SERVER:-${NATS_HOME:-/tmp/nats}/bin/nats-server}
case "$cmd" in
start)
    [ -x "$server" ] || { echo "nats-cluster: $server not found (see the comment at the top)" >&2; exit 1; }
    mkdir -p "$dir"
    routes=""
    for i in $(seq 1 "$nodes"); do routes+="nats-route://127.0.0.1:$((6221 + i)), "; done
    endpoints=""
    for i in $(seq 1 "$nodes"); do
        # One node runs JetStream standalone (for --journal-replicas 1); several form a cluster.
        cluster=""
        [ "$nodes" -gt 1 ] && cluster="cluster {
  name: kvjournal
  listen: 127.0.0.1:$((6221 + i))
  routes: [${routes%, }]
}"
        cat > "$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((4221 + i))
http: 127.0.0.1:$((8221 + i))
max_payload: 8MB
jetstream {
  store_dir: "$dir/n$i"
  sync_interval: always
}
$cluster
CONF
        "$server" -c "$dir/n$i.conf" > "$dir/n$i.log" 2>&1 &
        echo $! > "$dir/n$i.pid"
        endpoints+="nats://127.0.0.1:$((4221 + i)),"
    done
    for i in $(seq 1 "$nodes"); do
        for _ in $(seq 1 300); do
            curl -sf "http://127.0.0.1:$((8221 + i))/healthz" >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    echo "${endpoints%,}"
    ;;
stop)
    for pid in "$dir"/n*.pid; do
        [ -f "$pid" ] || continue
        kill "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
    ;;
*) echo "usage: nats-cluster.sh start|stop DIR [NODES]" >&2; exit 2 ;;
esac
