#!/usr/bin/env bash
# Builds the Debian package: release binaries of dasher and dasher-sim, then cargo-deb
# (installed if missing) → $CARGO_TARGET_DIR/debian/dasher_VERSION-1_ARCH.deb (path printed).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release -p dasher-server --bin dasher -p dasher-sim --bin dasher-sim
cargo deb -p dasher-server --no-build "$@"
