#!/usr/bin/env bash
# Installs the reference etcd, etcdctl and etcdutl under $ETCDREF_HOME/bin (default /tmp/etcdref)
# through ../shared/tools/reference-etcd.sh, unless they are there already.
# The script prints its version banner with `etcd --version | head -1` under pipefail, so it can
# exit 141 (SIGPIPE) after a successful install when head closes the pipe first; the binaries
# being present and runnable is what counts.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
home=${ETCDREF_HOME:-/tmp/etcdref}
installed() { [ -x "$home/bin/etcd" ] && [ -x "$home/bin/etcdctl" ] && "$home/bin/etcd" --version >/dev/null; }
if ! installed; then
    ref="$root/../shared/tools/reference-etcd.sh"
    [ -f "$ref" ] || { echo "install-reference-etcd: $ref not found and no etcd under $home/bin" >&2; exit 1; }
    status=0
    bash "$ref" install "$home" >/dev/null || status=$?
    if ! installed; then echo "install-reference-etcd: reference-etcd.sh install failed (exit $status)" >&2; exit 1; fi
fi
"$home/bin/etcd" --version >&2
