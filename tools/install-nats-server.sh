#!/usr/bin/env bash
# Installs nats-server under $NATS_HOME/bin (default /tmp/nats) unless it is there already:
# Debian unstable's 2.15 (bookworm's 2.9 lacks sync_interval), unpacked by
# ../shared/tools/debian-package.sh without touching the system's apt setup.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
home=${NATS_HOME:-/tmp/nats}
if ! "$home/bin/nats-server" --version >/dev/null 2>&1; then
    bash "$root/../shared/tools/debian-package.sh" "$home" nats-server >/dev/null
fi
"$home/bin/nats-server" --version >&2
