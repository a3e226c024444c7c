#!/usr/bin/env bash
# Installs every Debian 12 (bookworm) package that Custos needs to build,
# test, fuzz and benchmark. Run as root (or with sudo available). Safe to run
# again: apt-get skips what is already installed.
#
# What each group is for:
#   toolchain   build-essential cmake ninja-build pkg-config
#   fuzzing     clang libclang-rt-14-dev (libFuzzer and the sanitizer runtimes)
#   libraries   libssl-dev libsodium-dev libzstd-dev libarchive-dev libzmq3-dev
#               cppzmq-dev catch2 libcli11-dev nlohmann-json3-dev libsqlite3-dev
#               libtomlplusplus-dev libspdlog-dev
#               libcurl4-openssl-dev (alerts: webhook and SMTP delivery)
#               libhowardhinnant-date-dev tzdata (scheduler: IANA time zones;
#               libstdc++ 12 has no std::chrono::tzdb) (see /work/shared/DEPENDENCIES.md)
#   tests/bench python3-zmq restic borgbackup xxd openssl libarchive-tools (bsdtar)
#               unzip, sleuthkit (mactime reads evidence bundles' timelines)
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev
  libssl-dev libsodium-dev libzstd-dev libarchive-dev libzmq3-dev cppzmq-dev
  catch2 libcli11-dev nlohmann-json3-dev libsqlite3-dev libtomlplusplus-dev libspdlog-dev libcurl4-openssl-dev
  libhowardhinnant-date-dev tzdata
  python3-zmq restic borgbackup xxd openssl libarchive-tools unzip sleuthkit
)

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: must run as root (or with sudo installed)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update"
"${SUDO[@]}" apt-get update -qq
echo "install-deps: installing ${#PACKAGES[@]} packages"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Use-Pty=0 "${PACKAGES[@]}" >/dev/null
echo "install-deps: done"
