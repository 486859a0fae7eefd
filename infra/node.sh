#!/bin/sh
# Runs a command with the project's Node first on PATH: Node 24 (Lambda's nodejs24.x) from the optional dependency
# `node24` when it installed (Linux x64), else the `node` found if it is 22 or later; `--node22` picks the bundled 22.
# Usage: sh infra/node.sh [--node22] command [args…]   (package.json's scripts call it; see docs/local.md)
root=$(cd "$(dirname "$0")/.." && pwd)
bundled=node24
if [ "$1" = "--node22" ]; then bundled=node22; shift; fi
if [ -x "$root/node_modules/$bundled/bin/node" ]; then
  PATH="$root/node_modules/$bundled/bin:$PATH"
  export PATH
elif [ "$bundled" = "node22" ]; then
  echo "node.sh: node_modules/node22 is missing (an optional dependency, Linux x64 only); run npm ci on Linux x64" >&2
  exit 1
elif ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)' 2>/dev/null; then
  found=$(node --version 2>/dev/null || echo "none")
  echo "node.sh: this project needs Node.js 22 or later; the node on PATH is $found." >&2
  echo "node.sh: install Node.js 22+ (https://nodejs.org, or nvm install 24), then npm ci again." >&2
  echo "node.sh: on Linux x64, npm ci installs Node 24 itself (the optional dependency node24)." >&2
  exit 1
fi
exec "$@"
