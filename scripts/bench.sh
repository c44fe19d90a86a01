#!/usr/bin/env bash
# Macro benchmarks: Dasher (release build, all three example plugins loaded) on loopback, driven
# by dasher-sim. See "How to run" in BENCHMARKS.md.
#
#   scripts/bench.sh [--smoke] [--only NAME] [--engines "redb sled"] [--out DIR]
#   (full size: HOSTS=10000 and DURATION=120s of the load phases, MEM_HOSTS=100000,
#   MEM_RULES=1000000, MEM_CONC=256 and RULE_BATCH=50000 of the memory run, and REWRITE_EVERY=2s
#   of the reload run can be overridden from the environment)
#
# Scenarios (NAME): baseline, steady, steady-noplugins, rule-push, storm, big-clean, event-flood,
# memory, reload. Every scenario
# gets a fresh data directory and a fresh server per engine, so peak RSS (VmHWM) and store size
# belong to that scenario alone. Results: DIR/RUN.json (simulator report + server CPU/RSS of
# the measured phase), DIR/RUN.meta.json (engine, store size, reopen time), and the merged
# DIR/results.json and DIR/results.md (a table for BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0
ONLY=""
ENGINES="redb sled"
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --only) ONLY="$2"; shift ;;
        --engines) ENGINES="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$SMOKE" = 1 ]; then
    # Tiny sizes: proves every scenario runs end to end, in well under 2 minutes.
    HOSTS=50; RULES=500; DURATION=3s; CONC=16; EDIT_EVERY=1s; EDIT_RULES=10
    PUSH=200; STORM_RULES=500; STORM_CONC=50; BIG_RULES=2000; EVENTS=10000; FLOOD_CONC=8
    MEM_HOSTS=200; MEM_RULES=5000; MEM_CONC=32; RULE_BATCH=1000; REWRITE_EVERY=1s
else
    HOSTS=${HOSTS:-10000}; RULES=1000; DURATION=${DURATION:-120s}; CONC=64; EDIT_EVERY=10s; EDIT_RULES=10
    PUSH=5000; STORM_RULES=20000; STORM_CONC=512; BIG_RULES=100000; EVENTS=1000000; FLOOD_CONC=32
    MEM_HOSTS=${MEM_HOSTS:-100000}; MEM_RULES=${MEM_RULES:-1000000}; MEM_CONC=${MEM_CONC:-256}
    RULE_BATCH=${RULE_BATCH:-50000}; REWRITE_EVERY=${REWRITE_EVERY:-2s}
fi
# Bound on every server process this script starts (seconds).
SERVER_LIMIT=$([ "$SMOKE" = 1 ] && echo 300 || echo 7200)

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dasher-target}
OUT=${OUT:-$ROOT/target/bench-$(date -u +%Y%m%dT%H%M%SZ)$([ "$SMOKE" = 1 ] && echo -smoke)}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dasher-bench.XXXXXX")
TOKEN=bench-$RANDOM$RANDOM
BIN=$CARGO_TARGET_DIR/release

SERVER_PID=""
WATCHDOG_PID=""
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

free_port() {
    local p
    for _ in $(seq 50); do
        # Below the ephemeral range (32768+ here), where the fleet's own client sockets live.
        p=$((10000 + RANDOM % 20000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
    done
    echo "no free port found" >&2; exit 1
}

# wait_healthy PORT T0_NS -> sets READY_NS (time from T0 until /healthz answered).
wait_healthy() {
    local port=$1 t0=$2
    for _ in $(seq 3000); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            READY_NS=$(( $(date +%s%N) - t0 ))
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server exited; log:" >&2; tail -20 "$WORK/server.log" >&2; exit 1
        fi
        sleep 0.01
    done
    echo "server did not become healthy" >&2; exit 1
}

# watchdog PID: kills PID after SERVER_LIMIT seconds unless stopped first (sets WATCHDOG_PID).
watchdog() {
    local target=$1
    ( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep "$SERVER_LIMIT" & s=$!; wait $s; kill "$target" 2>/dev/null ) &
    WATCHDOG_PID=$!
}

# start_server ENGINE DATA_DIR PORT [plugins|noplugins|watch] -> sets SERVER_PID and READY_NS.
# watch: the plugins from their own directory ($WORK/plugins-watch), watched for changes.
start_server() {
    local engine=$1 data=$2 port=$3 plugins=${4:-plugins} store config
    case "$engine" in
        redb) store="redb:$data/dasher.redb" ;;
        sled) store="sled:$data/sled" ;;
    esac
    config=$WORK/dasher-$plugins.toml
    local t0
    t0=$(date +%s%N)
    "$BIN/dasher" serve --config "$config" --listen "127.0.0.1:$port" --data-dir "$data" --store "$store" \
        --admin-token "$TOKEN" --log warn >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    watchdog "$SERVER_PID"
    wait_healthy "$port" "$t0"
}

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

meta() { # meta RUN ENGINE DATA [extra JSON fields]
    local run=$1 engine=$2 data=$3 extra=${4:-}
    local bytes=${STORE_BYTES:-}
    [ -n "$bytes" ] || bytes=$(du -sb "$data" | cut -f1)
    printf '{"engine":"%s","store_bytes":%s%s}\n' "$engine" "$bytes" "$extra" >"$OUT/$run.meta.json"
}

sim() { # sim TIMEOUT_S SCENARIO ARGS...
    local limit=$1; shift
    timeout "$limit" "$BIN/dasher-sim" bench "$@"
}

echo "==> release build (dasher, dasher-sim)"
cargo build --release -q -p dasher-server -p dasher-sim

echo "==> building the example plugins"
mkdir -p "$WORK/plugins"
for p in staged-rollout ruleset-targeting event-triage; do
    "$BIN/dasher" plugin build "plugins/$p" --out "$WORK/plugins/$p.wasm" >/dev/null
done
plugins_config() { # plugins_config DIR WATCH
    cat <<EOF
[plugins]
dir = "$1"
watch = $2
order = ["staged-rollout", "ruleset-targeting", "event-triage"]

[plugins.plugin.staged-rollout]
settings = { lockdown_after_days = 14, lockdown_groups = ["it"], exempt_hostnames = ["build-*"] }

[plugins.plugin.ruleset-targeting]
settings = { always = ["global"], targets = [{ rule_set = "developer-tools", groups = ["engineering"] }, { rule_set = "sequoia-compat", os_major = [15] }] }

[plugins.plugin.event-triage]
settings = { approved_team_ids = ["EQHXZ8M8AV", "UBF8T346G9"], propose_after_hosts = 3 }
EOF
}
plugins_config "$WORK/plugins" false >"$WORK/dasher-plugins.toml"
plugins_config "$WORK/plugins-watch" true >"$WORK/dasher-watch.toml"
: >"$WORK/dasher-noplugins.toml"

LIMIT=$([ "$SMOKE" = 1 ] && echo 120 || echo 3600)

if want baseline; then
    echo "==> baseline: the same client against a trivial endpoint"
    port=$(free_port)
    "$BIN/dasher-sim" bench baseline-server --port "$port" >"$WORK/baseline.log" 2>&1 &
    SERVER_PID=$!
    watchdog "$SERVER_PID"
    for _ in $(seq 500); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.01; done
    sim "$LIMIT" steady --server "http://127.0.0.1:$port/santa/" --server-pid "$SERVER_PID" --hosts "$HOSTS" \
        --duration "$DURATION" --concurrency "$CONC" --edit-every 0s --report "$OUT/1-baseline.json"
    printf '{"engine":"baseline"}\n' >"$OUT/1-baseline.meta.json"
    stop_server
fi

for engine in $ENGINES; do
    if want steady; then
        echo "==> steady state ($engine): $HOSTS hosts, NORMAL syncs, rule edits every $EDIT_EVERY, plugins on"
        data=$WORK/steady-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port"
        sim "$LIMIT" steady --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" --server-pid "$SERVER_PID" \
            --hosts "$HOSTS" --rules "$RULES" --duration "$DURATION" --concurrency "$CONC" \
            --edit-every "$EDIT_EVERY" --edit-rules "$EDIT_RULES" --report "$OUT/2-steady-$engine.json"
        stop_server; meta "2-steady-$engine" "$engine" "$data"
    fi

    if want steady-noplugins; then
        echo "==> steady state without plugins ($engine): as steady, no plugins loaded"
        data=$WORK/steady-noplugins-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port" noplugins
        sim "$LIMIT" steady --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" --server-pid "$SERVER_PID" \
            --hosts "$HOSTS" --rules "$RULES" --duration "$DURATION" --concurrency "$CONC" \
            --edit-every "$EDIT_EVERY" --edit-rules "$EDIT_RULES" --report "$OUT/2-steady-$engine-noplugins.json"
        stop_server; meta "2-steady-$engine-noplugins" "$engine" "$data" ',"plugins":false'
    fi

    if want rule-push; then
        echo "==> rule push ($engine): $PUSH new rules while $HOSTS hosts sync"
        data=$WORK/push-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port"
        sim "$LIMIT" rule-push --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" \
            --server-pid "$SERVER_PID" --hosts "$HOSTS" --rules "$RULES" --push-rules "$PUSH" \
            --duration "$DURATION" --concurrency "$CONC" --report "$OUT/3-rule-push-$engine.json"
        stop_server; meta "3-rule-push-$engine" "$engine" "$data"
    fi

    if want storm; then
        echo "==> clean-sync storm ($engine): $HOSTS hosts at once against $STORM_RULES rules"
        data=$WORK/storm-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port"
        sim "$LIMIT" storm --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" --server-pid "$SERVER_PID" \
            --hosts "$HOSTS" --rules "$STORM_RULES" --concurrency "$STORM_CONC" --report "$OUT/4-storm-$engine.json"
        stop_server; meta "4-storm-$engine" "$engine" "$data"
    fi

    if want big-clean; then
        echo "==> single-host clean sync ($engine): $BIG_RULES rules"
        data=$WORK/big-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port"
        sim "$LIMIT" storm --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" --server-pid "$SERVER_PID" \
            --hosts 1 --rules "$BIG_RULES" --concurrency 1 --report "$OUT/5-big-clean-$engine.json"
        stop_server; meta "5-big-clean-$engine" "$engine" "$data"
    fi

    if want event-flood; then
        echo "==> event flood ($engine): $EVENTS events in batches of 50, then reopen"
        data=$WORK/flood-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port"
        sim "$LIMIT" event-flood --server "http://127.0.0.1:$port/santa/" --server-pid "$SERVER_PID" \
            --hosts "$HOSTS" --events "$EVENTS" --batch 50 --concurrency "$FLOOD_CONC" \
            --report "$OUT/6-event-flood-$engine.json"
        stop_server
        flood_bytes=$(du -sb "$data" | cut -f1)
        # Reopen: a fresh process on the same store, without plugins, until /healthz answers.
        start_server "$engine" "$data" "$port" noplugins
        stop_server
        STORE_BYTES=$flood_bytes meta "6-event-flood-$engine" "$engine" "$data" \
            ",\"reopen_s\":$(awk "BEGIN{print $READY_NS/1e9}")"
    fi

    if want memory; then
        echo "==> memory ($engine): $MEM_HOSTS hosts register, $MEM_RULES rules load, one host clean-syncs them all"
        data=$WORK/memory-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port"
        sim "$LIMIT" memory --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" --server-pid "$SERVER_PID" \
            --hosts "$MEM_HOSTS" --rules "$MEM_RULES" --rule-batch "$RULE_BATCH" --concurrency "$MEM_CONC" \
            --report "$OUT/7-memory-$engine.json"
        stop_server; meta "7-memory-$engine" "$engine" "$data"
    fi

    if want reload; then
        echo "==> hot reload under load ($engine): steady, plugins watched, staged-rollout rewritten every $REWRITE_EVERY"
        rm -rf "$WORK/plugins-watch"; cp -r "$WORK/plugins" "$WORK/plugins-watch"
        data=$WORK/reload-$engine; mkdir -p "$data"; port=$(free_port)
        start_server "$engine" "$data" "$port" watch
        sim "$LIMIT" steady --server "http://127.0.0.1:$port/santa/" --admin-token "$TOKEN" --server-pid "$SERVER_PID" \
            --hosts "$HOSTS" --rules "$RULES" --duration "$DURATION" --concurrency "$CONC" \
            --edit-every "$EDIT_EVERY" --edit-rules "$EDIT_RULES" \
            --rewrite-plugin "$WORK/plugins-watch/staged-rollout.wasm" --rewrite-every "$REWRITE_EVERY" \
            --report "$OUT/8-reload-$engine.json"
        stop_server; meta "8-reload-$engine" "$engine" "$data" ',"watch":true'
    fi
done

echo "==> results in $OUT"
"$BIN/dasher-sim" bench summarize "$OUT"
