#!/usr/bin/env bash
# Installs what Switchboard's build, tests and benchmarks need on Debian, and nothing else.
# Debian packages go through apt-get (as root, or with sudo); npm packages come from the
# committed package-lock.json with `npm ci`. Safe to run again: it only installs what is missing.
#
#   scripts/setup.sh            what building and `make demo` need
#   scripts/setup.sh test       also what `make test` needs (curl, Debian chromium, redis-server,
#                               nginx)
#   scripts/setup.sh bench      also what `make bench` needs (taskset, strace, redis-server)
#   scripts/setup.sh cluster    also what `make demo-cluster` needs (redis-server, nginx)
set -euo pipefail
cd "$(dirname "$0")/.."

want=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libuv1-dev libhttp-parser-dev libssl-dev libjwt-dev libcmocka-dev libhiredis-dev
      nodejs npm)
case "${1:-}" in
  # curl, the real browser and Redis of the tests, and nginx for the demo cluster's browser
  # test (tests/browser/demo_cluster.test.mjs runs scripts/demo-cluster.sh)
  test)  want+=(curl chromium redis-server nginx) ;;
  bench) want+=(util-linux strace redis-server) ;; # redis-server: the cross-node part
  cluster) want+=(redis-server nginx) ;; # Redis between the nodes, nginx in front of them
  "") ;;
  *) echo "setup: unknown mode '$1' (none, test, bench or cluster)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  # nodejs/npm may come from elsewhere than Debian (nvm, NodeSource): accept any working one.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm)    command -v npm  >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and neither root nor sudo is available." >&2
    echo "setup: install them by hand: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages: reinstall only when the lockfile changed since the last install.
stamp=node_modules/.switchboard-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
