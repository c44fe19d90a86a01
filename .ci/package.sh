#!/usr/bin/env bash
# Builds and checks the two artifacts operators install (README "Installing"):
#  1. the .deb (cargo-deb): dpkg -i, systemd-analyze verify, start the installed binary as the
#     unit would (this machine may not run systemd as init), a simulated Mac syncs, remove and
#     reinstall, the data survives;
#  2. the container image (buildah, vfs storage, chroot isolation): its size, then the image's
#     own root filesystem runs the server (chroot, as the image's user) and a Mac syncs.
# Run as root (CI is). `bash .ci/package.sh` on its own also works.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dasher-target}
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v buildah >/dev/null || need_apt+=(buildah)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v dpkg-shlibdeps >/dev/null || need_apt+=(dpkg-dev)
if ((${#need_apt[@]})); then
    echo "==> apt-get install ${need_apt[*]}"
    apt-get update -q </dev/null && apt-get -y -q install "${need_apt[@]}" </dev/null
fi
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

echo "==> release build (dasher, dasher-sim)"
cargo build --release -p dasher-server --bin dasher -p dasher-sim --bin dasher-sim
sim=$CARGO_TARGET_DIR/release/dasher-sim

server_pid=""
stop_server() { if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; fi; }
trap 'stop_server' EXIT

# wait_healthy URL: polls `dasher healthcheck` for up to 30 s.
wait_healthy() {
    for _ in $(seq 60); do
        "$1" healthcheck --url "$2" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "server did not become healthy at $2" >&2
    return 1
}

# sync_three BASE TOKEN: three simulated Macs complete a full sync.
sync_three() {
    local out
    out=$("$sim" sync-once --server "$1/santa/" --hosts 3 --admin-token "$2")
    echo "$out"
    [[ $(grep -c '"ok":true' <<<"$out") == 3 ]] || { echo "not every simulated Mac synced" >&2; return 1; }
}

echo "==> cargo deb (deploy/build-deb.sh, binaries already built)"
cargo deb -p dasher-server --no-build --output "$CARGO_TARGET_DIR/debian/" | tee /tmp/dasher-deb.path
deb=$(tail -n1 /tmp/dasher-deb.path)
dpkg-deb --info "$deb" | sed -n '1,20p'
dpkg-deb --contents "$deb"

echo "==> dpkg -i"
dpkg -r dasher >/dev/null 2>&1 || true
dpkg -i "$deb"
id dasher
test -f /etc/dasher/dasher.toml && test -d /var/lib/dasher && test -x /usr/bin/dasher-sim
[[ $(stat -c %U /var/lib/dasher) == dasher ]]
echo "==> systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/dasher.service

port=18480
base=http://127.0.0.1:$port
start_like_the_unit() {
    # User=dasher, WorkingDirectory=/var/lib/dasher, ExecStart=… (listen moved off 8080 for CI).
    (cd /var/lib/dasher && exec runuser -u dasher -- env DASHER_LOG=info DASHER_LISTEN=127.0.0.1:$port \
        /usr/bin/dasher serve --config /etc/dasher/dasher.toml) &
    server_pid=$!
    wait_healthy /usr/bin/dasher "$base/healthz"
}
echo "==> start the installed server as the unit would, sync three Macs"
start_like_the_unit
token=$(cat /var/lib/dasher/admin.token)
sync_three "$base" "$token"
hosts_before=$(curl -fsS -H "Authorization: Bearer $token" "$base/api/v1/hosts" | grep -o '"machine_id"' | wc -l)
stop_server

echo "==> remove, reinstall: the data and the config survive"
echo "# local edit" >>/etc/dasher/dasher.toml
dpkg -r dasher
test -f /var/lib/dasher/dasher.redb
dpkg -i "$deb"
grep -q "# local edit" /etc/dasher/dasher.toml
start_like_the_unit
hosts_after=$(curl -fsS -H "Authorization: Bearer $token" "$base/api/v1/hosts" | grep -o '"machine_id"' | wc -l)
echo "hosts before: $hosts_before, after reinstall: $hosts_after"
[[ "$hosts_before" -ge 3 && "$hosts_after" == "$hosts_before" ]]
stop_server
dpkg --purge dasher
rm -rf /var/lib/dasher

echo "==> container image"
export BUILDAH_STORAGE=vfs
SKIP_BUILD=1 bash deploy/container/build.sh | tee /tmp/dasher-image.log
size=$(buildah --storage-driver vfs inspect --format '{{.Size}}' localhost/dasher:latest 2>/dev/null || true)
echo "image: $(tail -n1 /tmp/dasher-image.log) ${size}"
ctr=$(buildah --storage-driver vfs from localhost/dasher:latest)
mnt=$(buildah --storage-driver vfs mount "$ctr")
cleanup_image() { stop_server; buildah --storage-driver vfs umount "$ctr" >/dev/null 2>&1 || true; buildah --storage-driver vfs rm "$ctr" >/dev/null 2>&1 || true; }
trap 'cleanup_image' EXIT
echo "image root filesystem: $(du -sh "$mnt" | cut -f1) at $mnt"
echo "==> run the image's own root filesystem (chroot as uid 10001, the image's config), sync three Macs"
port=18481
base=http://127.0.0.1:$port
(cd / && exec chroot --userspec=10001:10001 "$mnt" /usr/bin/dasher serve --config /etc/dasher/dasher.toml --listen 127.0.0.1:$port) &
server_pid=$!
wait_healthy "$CARGO_TARGET_DIR/release/dasher" "$base/healthz"
chroot --userspec=10001:10001 "$mnt" /usr/bin/dasher healthcheck --url "$base/healthz"
sync_three "$base" "$(cat "$mnt/data/admin.token")"
stop_server
echo "==> packages checked"
