#!/usr/bin/env bash
# Runs KvJournal's whole test suite, as CI does.
# Installs the reference etcd and etcdctl (Debian's packages, through ../shared/tools/reference-etcd.sh)
# and nats-server (Debian unstable's, through ../shared/tools/debian-package.sh) first when they are
# missing; nothing else is downloaded. Then runs every test project.
# Tests start real kvjournal and etcd processes on 127.0.0.1 and stop them by PID. The native build
# needs clang (Debian's package; .ci/run installs it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ETCDREF_HOME=${ETCDREF_HOME:-/tmp/etcdref}
bash "$root/tools/install-reference-etcd.sh"
# nats-server for the replicated journal's tests (Debian unstable's 2.15, unpacked under $NATS_HOME).
export NATS_HOME=${NATS_HOME:-/tmp/nats}
bash "$root/tools/install-nats-server.sh"
cd "$root"
# The code style of .editorconfig (whitespace, import order): a change that breaks it fails here, fast.
dotnet format KvJournal.sln --verify-no-changes
# The suite drives the native executable that `dotnet publish` makes (what ships): KvJournal.Testing
# starts $KVJOURNAL_SERVER. Unset, tests run the JIT build's kvjournal.dll instead (plain `dotnet test`).
dotnet publish src/KvJournal.Server -c Release -o "$root/artifacts/kvjournal" -v quiet -nologo
export KVJOURNAL_SERVER="$root/artifacts/kvjournal/kvjournal"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test KvJournal.sln -c Release 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line over all test projects.
awk '/(Passed|Failed)!  - Failed:/ { gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
