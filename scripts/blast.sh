#!/usr/bin/env bash
# Capacity measured from outside: `dasher-sim blast` against a release `dasher serve` (redb,
# the three example plugins loaded), one fresh server per rule count, every client generation,
# each with the trivial target's figure from the same run (--compare-trivial).
#
# Usage: scripts/blast.sh [--out DIR] [--rules "8 1000 10000 100000"] [--duration 10s]
#                         [--generations legacy-json,rules-hash-json,protobuf] [--bin-dir DIR]
# --bin-dir: use the dasher and dasher-sim binaries in DIR instead of building release ones.
# Environment: CARGO_TARGET_DIR (default ~/.cache/dasher-target), CONNECTIONS (8), PLUGINS (1; 0 = none),
#   HOSTS (1000; fewer for large rule counts, see hosts_for), EVENTS (0 events per sync).
# Results: DIR/blast-RULES.json (the blast report per rule count) and DIR/results.md.
# Bounded: every server and blast run has a time limit; the whole script takes ~6-9 min
# after the build on this 2-core machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

OUT=""
RULE_COUNTS="8 1000 10000 100000"
DURATION=10s
GENERATIONS=legacy-json,rules-hash-json,protobuf
BIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift ;;
        --rules) RULE_COUNTS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --generations) GENERATIONS="$2"; shift ;;
        --bin-dir) BIN="$2"; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
CONNECTIONS=${CONNECTIONS:-8}
HOSTS=${HOSTS:-1000}
EVENTS=${EVENTS:-0}

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dasher-target}
OUT=${OUT:-$ROOT/target/blast-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dasher-blast.XXXXXX")
TOKEN=blast-$RANDOM$RANDOM
SERVER_PID=""
WATCHDOG_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    if [ -n "$WATCHDOG_PID" ]; then
        kill "$WATCHDOG_PID" 2>/dev/null || true
        wait "$WATCHDOG_PID" 2>/dev/null || true
        WATCHDOG_PID=""
    fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() {
    local p
    for _ in $(seq 50); do
        p=$((10000 + RANDOM % 20000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
    done
    echo "no free port found" >&2; exit 1
}

# start_server DATA_DIR PORT -> sets SERVER_PID (killed after 15 minutes whatever happens).
start_server() {
    local data=$1 port=$2
    "$BIN/dasher" serve --config "$WORK/dasher.toml" --listen "127.0.0.1:$port" --data-dir "$data" \
        --store "redb:$data/dasher.redb" --admin-token "$TOKEN" --log warn >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    ( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep 900 & s=$!; wait $s; kill "$SERVER_PID" 2>/dev/null ) &
    WATCHDOG_PID=$!
    for _ in $(seq 3000); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; log:" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }
        sleep 0.01
    done
    echo "server did not become healthy" >&2; exit 1
}

# Enrolment downloads every rule once per host and generation, so large rule sets get fewer
# hosts (still ≥ 8 per connection): 1000 hosts × 100,000 rules × 3 generations would be 3e8
# rules of set-up alone.
hosts_for() {
    case "$1" in
        8|1000) echo "$HOSTS" ;;
        10000) echo $(( HOSTS < 200 ? HOSTS : 200 )) ;;
        *) echo $(( CONNECTIONS * 8 )) ;;
    esac
}

if [ -z "$BIN" ]; then
    echo "==> release build (dasher, dasher-sim)"
    cargo build --release -q -p dasher-server -p dasher-sim
    BIN=$CARGO_TARGET_DIR/release
fi

if [ "${PLUGINS:-1}" = 0 ]; then
    echo "==> no plugins (PLUGINS=0)"
    : >"$WORK/dasher.toml"
else
echo "==> building the example plugins"
mkdir -p "$WORK/plugins"
for p in staged-rollout ruleset-targeting event-triage; do
    "$BIN/dasher" plugin build "plugins/$p" --out "$WORK/plugins/$p.wasm" >/dev/null
done
cat >"$WORK/dasher.toml" <<TOML
[plugins]
dir = "$WORK/plugins"
watch = false
order = ["staged-rollout", "ruleset-targeting", "event-triage"]

[plugins.plugin.staged-rollout]
settings = { lockdown_after_days = 14, lockdown_groups = ["it"], exempt_hostnames = ["build-*"] }

[plugins.plugin.ruleset-targeting]
settings = { always = ["global"], targets = [{ rule_set = "developer-tools", groups = ["engineering"] }, { rule_set = "sequoia-compat", os_major = [15] }] }

[plugins.plugin.event-triage]
settings = { approved_team_ids = ["EQHXZ8M8AV", "UBF8T346G9"], propose_after_hosts = 3 }
TOML
fi

echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load before: $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee "$OUT/results.md"
for rules in $RULE_COUNTS; do
    data=$WORK/data-$rules; mkdir -p "$data"; port=$(free_port)
    hosts=$(hosts_for "$rules")
    echo "==> $rules rules, $hosts hosts per generation, $CONNECTIONS connections, $DURATION per run"
    start_server "$data" "$port"
    timeout 600 "$BIN/dasher-sim" blast --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" \
        --server-pid "$SERVER_PID" --load-rules "$rules" --hosts "$hosts" --connections "$CONNECTIONS" \
        --duration "$DURATION" --generation "$GENERATIONS" --events-per-sync "$EVENTS" --compare-trivial \
        --report "$OUT/blast-$rules.json" | tee -a "$OUT/results.md"
    stop_server
done
echo "results in $OUT"
