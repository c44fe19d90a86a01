#!/usr/bin/env bash
# Builds the Dasher container image from deploy/container/Containerfile: compiles the release
# binary (unless SKIP_BUILD=1), lays out a minimal root filesystem (the binary, the shared
# libraries it links, /etc/passwd and /etc/group with the dasher user, CA certificates, the
# container config, an empty /data), then builds with buildah (or podman). Prints the size.
#
#   bash deploy/container/build.sh                      # → localhost/dasher:latest
#   DASHER_IMAGE=registry.example.com/dasher:1 bash deploy/container/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
image=${DASHER_IMAGE:-localhost/dasher:latest}
uid=10001

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p dasher-server --bin dasher
fi
bin=$CARGO_TARGET_DIR/release/dasher
[[ -x "$bin" ]] || { echo "no release binary at $bin (build it, or unset SKIP_BUILD)" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
install -D -m 0755 "$bin" "$root/usr/bin/dasher"
strip --strip-unneeded "$root/usr/bin/dasher"
# The C runtime the binary links (glibc, libgcc_s, the loader), copied to the same paths.
for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    install -D -m 0644 "$(readlink -f "$lib")" "$root$lib"
done
chmod 0755 "$root"/lib*/ld-linux* 2>/dev/null || true
mkdir -p "$root/etc/dasher" "$root/tmp" "$ctx/datadir/data"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/:/sbin/nologin\ndasher:x:%s:%s:Dasher:/data:/sbin/nologin\n' "$uid" "$uid" >"$root/etc/passwd"
printf 'root:x:0:\ndasher:x:%s:\n' "$uid" >"$root/etc/group"
install -m 0644 deploy/container/dasher.toml "$root/etc/dasher/dasher.toml"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
# /data is copied as an item of its own so COPY --chown gives the directory itself to the
# service user (an existing destination directory would stay root's).
chown -R "$uid:$uid" "$ctx/datadir/data"
cp deploy/container/Containerfile "$ctx/Containerfile"

if command -v buildah >/dev/null; then
    # vfs storage and chroot isolation: no kernel overlay or user namespaces needed (CI).
    buildah ${BUILDAH_STORAGE:+--storage-driver "$BUILDAH_STORAGE"} build --format docker \
        --isolation "${BUILDAH_ISOLATION:-chroot}" -t "$image" -f "$ctx/Containerfile" "$ctx"
    size=$(buildah ${BUILDAH_STORAGE:+--storage-driver "$BUILDAH_STORAGE"} images --format '{{.Size}}' "$image")
elif command -v podman >/dev/null; then
    podman build --format docker -t "$image" -f "$ctx/Containerfile" "$ctx"
    size=$(podman images --format '{{.Size}}' "$image")
else
    echo "neither buildah nor podman is installed (apt-get install buildah)" >&2
    exit 1
fi
echo "built $image ($size)"
