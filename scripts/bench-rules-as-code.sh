#!/usr/bin/env bash
# Rules as code at 100,000 rules: times `dasher rules plan/apply/export` against a real server.
#
#   scripts/bench-rules-as-code.sh [DASHER_BINARY] [RULES]
#
# Starts `dasher serve` on a free loopback port with a fresh redb store in a temp dir, writes one
# rules file of RULES (default 100000) BINARY rules, then times: plan (all adds), apply (one
# version), plan again (no-op), export, a 1% change planned and applied, and a no-op apply.
set -euo pipefail
BIN=${1:-target/release/dasher}
N=${2:-100000}
WORK=$(mktemp -d)
PORT=$(( 20000 + RANDOM % 20000 ))
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export DASHER_ADMIN_TOKEN=bench-token DASHER_SERVER=http://127.0.0.1:$PORT
"$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --log warn &
SERVER_PID=$!
for _ in $(seq 100); do curl -sf "$DASHER_SERVER/healthz" >/dev/null && break; sleep 0.1; done
mkdir -p "$WORK/rules"
gen() { # $1 = policy of every 100th rule
  awk -v n="$N" -v p="$1" 'BEGIN { print "rule_set = \"fleet\"";
    for (i = 0; i < n; i++) printf "[[rules]]\nidentifier = \"%064x\"\nrule_type = \"BINARY\"\npolicy = \"%s\"\ncomment = \"rule %d\"\n\n", i, (i % 100 == 0 ? p : "ALLOWLIST"), i }'
}
gen ALLOWLIST > "$WORK/rules/fleet.toml"
echo "rules file: $N rules, $(du -h "$WORK/rules/fleet.toml" | cut -f1)"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null || [[ $? == 2 ]]; e=$(date +%s.%N); printf '%-34s %6.2f s\n' "$LABEL" "$(echo "$e - $s" | bc)"; }
LABEL="plan ($N to add)"            t "$BIN" rules plan "$WORK/rules"
LABEL="apply ($N added, 1 version)" t "$BIN" rules apply "$WORK/rules"
LABEL="plan again (no change)"      t "$BIN" rules plan "$WORK/rules"
LABEL="export ($N rules)"           t "$BIN" rules export "$WORK/export"
gen BLOCKLIST > "$WORK/rules/fleet.toml"
LABEL="plan (1% changed)"           t "$BIN" rules plan "$WORK/rules"
LABEL="apply (1% changed)"          t "$BIN" rules apply "$WORK/rules"
LABEL="apply again (no-op)"         t "$BIN" rules apply "$WORK/rules"
