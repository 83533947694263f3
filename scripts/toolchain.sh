# shellcheck shell=bash
# Puts Node.js >= 22 and pnpm >= 11 on PATH for this project. Source it (bash):
#
#   source scripts/toolchain.sh
#
# When the machine's `node` and `pnpm` are new enough they are used as they are. Otherwise Node 24
# and pnpm 12 are installed with the machine's npm into a per-user cache (no sudo; the system's Node
# is left alone):
#
#   R2_REGISTRY_NODE_DIR   where (default: ~/.cache/r2-registry-node24)
#
# and that folder's bin/ is put first on PATH. R2_REGISTRY_NODE_DIR is exported then, so that
# programs started from here (the tests) know where the toolchain is. A later run finds the cache
# and downloads nothing. Used by scripts/start (README's quick start) and .ci/run.

R2_REGISTRY_MIN_NODE=22
R2_REGISTRY_MIN_PNPM=11

# Major version of `$1 --version` (0 when it is missing or does not run).
_r2_registry_major() {
  local v
  v="$("$1" --version 2>/dev/null)" || v=""
  v="${v#v}"
  v="${v%%.*}"
  case "$v" in '' | *[!0-9]*) echo 0 ;; *) echo "$v" ;; esac
}

# True when node and pnpm (commands or paths) are both new enough.
_r2_registry_usable() {
  [ "$(_r2_registry_major "$1")" -ge "$R2_REGISTRY_MIN_NODE" ] &&
    [ "$(_r2_registry_major "$2")" -ge "$R2_REGISTRY_MIN_PNPM" ]
}

r2_registry_toolchain() {
  local node_dir="${R2_REGISTRY_NODE_DIR:-$HOME/.cache/r2-registry-node24}"
  if _r2_registry_usable node pnpm; then
    echo "toolchain: node $(node --version), pnpm $(pnpm --version) (from PATH)" >&2
    return 0
  fi
  if ! _r2_registry_usable "$node_dir/bin/node" "$node_dir/bin/pnpm"; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "toolchain: this project needs Node.js >= $R2_REGISTRY_MIN_NODE and pnpm >= $R2_REGISTRY_MIN_PNPM;" \
        "node on PATH is $(node --version 2>/dev/null || echo missing) and pnpm $(pnpm --version 2>/dev/null || echo missing)," \
        "and there is no npm to fetch them with. Install npm (Debian: apt-get install npm) and run this again," \
        "or install Node.js >= $R2_REGISTRY_MIN_NODE and pnpm >= $R2_REGISTRY_MIN_PNPM yourself." >&2
      return 1
    fi
    echo "toolchain: installing Node 24 and pnpm 12 into $node_dir (node on PATH is" \
      "$(node --version 2>/dev/null || echo missing), pnpm $(pnpm --version 2>/dev/null || echo missing))" >&2
    mkdir -p "$node_dir" || return 1
    npm install -g --prefix "$node_dir" --no-fund --no-audit node@24 pnpm@12 >&2 || {
      echo "toolchain: npm could not install Node 24 and pnpm 12 into $node_dir" >&2
      return 1
    }
    if ! _r2_registry_usable "$node_dir/bin/node" "$node_dir/bin/pnpm"; then
      echo "toolchain: $node_dir/bin has no working node >= $R2_REGISTRY_MIN_NODE and pnpm >= $R2_REGISTRY_MIN_PNPM after the install" >&2
      return 1
    fi
  fi
  export R2_REGISTRY_NODE_DIR="$node_dir"
  export PATH="$node_dir/bin:$PATH"
  hash -r
  echo "toolchain: node $(node --version), pnpm $(pnpm --version) (from $node_dir/bin)" >&2
}

r2_registry_toolchain
