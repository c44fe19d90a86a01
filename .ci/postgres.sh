# Starts a throwaway PostgreSQL server for Dasher's PostgreSQL tests and exports
# DASHER_TEST_POSTGRES_URL. Installs PostgreSQL with apt-get if no server binaries are found.
#
#   source .ci/postgres.sh                   # in a bash script: server lives until that shell exits
#   bash .ci/postgres.sh cargo test -p dasher-store --test postgres   # run one command against it
#
# The cluster lives in a temp dir, listens on 127.0.0.1 (a free port) and a private socket dir,
# trusts local connections, runs as a non-root user (initdb refuses root) and is stopped and
# deleted on exit. It runs with fsync=off: it is for tests only.

_dasher_pg_main() {
    local bindir="" candidate
    for candidate in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" \
        /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
        if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
            bindir=$candidate
            break
        fi
    done
    if [[ -z "$bindir" ]]; then
        echo "==> PostgreSQL not found; installing it with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q </dev/null
        apt-get -y -q install postgresql </dev/null
        for candidate in /usr/lib/postgresql/*/bin; do
            [[ -x "$candidate/initdb" ]] && bindir=$candidate
        done
        if [[ -z "$bindir" ]]; then
            echo "PostgreSQL installed but initdb not found" >&2
            return 1
        fi
    fi

    # initdb and postgres refuse to run as root: use the `postgres` user (created by the
    # package) or a dedicated system user.
    local run_as=()
    local user
    user=$(id -un)
    if [[ $(id -u) -eq 0 ]]; then
        user=postgres
        if ! id -u "$user" >/dev/null 2>&1; then
            user=dasher-pg
            id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
        fi
        run_as=(runuser -u "$user" --)
    fi

    DASHER_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dasher-pg.XXXXXX")
    chmod 755 "$DASHER_PG_DIR"
    [[ ${#run_as[@]} -gt 0 ]] && chown "$user" "$DASHER_PG_DIR"
    DASHER_PG_CTL=("${run_as[@]}" "$bindir/pg_ctl")

    "${run_as[@]}" "$bindir/initdb" -D "$DASHER_PG_DIR/data" -U dasher --auth=trust --no-sync -E UTF8 \
        >"$DASHER_PG_DIR/initdb.log" 2>&1 || {
        cat "$DASHER_PG_DIR/initdb.log" >&2
        return 1
    }

    local port attempt
    for attempt in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue # something listens there
        fi
        if "${DASHER_PG_CTL[@]}" -D "$DASHER_PG_DIR/data" -l "$DASHER_PG_DIR/server.log" -w -t 60 \
            -o "-h 127.0.0.1 -p $port -k $DASHER_PG_DIR -c fsync=off -c max_connections=300" start \
            >/dev/null; then
            export DASHER_TEST_POSTGRES_URL="postgres://dasher@127.0.0.1:$port/postgres"
            echo "==> PostgreSQL ($("$bindir/postgres" --version)) for tests at $DASHER_TEST_POSTGRES_URL"
            return 0
        fi
        echo "(PostgreSQL did not start on port $port, attempt $attempt)" >&2
    done
    cat "$DASHER_PG_DIR/server.log" >&2
    return 1
}

_dasher_pg_stop() {
    if [[ -n "${DASHER_PG_DIR:-}" && -d "$DASHER_PG_DIR" ]]; then
        "${DASHER_PG_CTL[@]}" -D "$DASHER_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$DASHER_PG_DIR"
    fi
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: keep the server until the sourcing shell exits.
    _dasher_pg_main || return 1
    trap _dasher_pg_stop EXIT
else
    # Run: start, run the given command (or wait for Enter), stop.
    set -euo pipefail
    trap _dasher_pg_stop EXIT
    _dasher_pg_main
    if [[ $# -gt 0 ]]; then
        "$@"
    else
        echo "export DASHER_TEST_POSTGRES_URL=$DASHER_TEST_POSTGRES_URL"
        read -r -p "PostgreSQL is running; press Enter to stop it. " _ || true
    fi
fi
