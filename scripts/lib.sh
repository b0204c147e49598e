# Shared by scripts/test, scripts/demo and scripts/bench. Source it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${JOBS:-$(nproc)}"

# configure_build DIR [cmake args...]: configure (once) and build DIR.
configure_build() {
  local dir="$1"; shift
  cmake -S "${SRC:-$ROOT}" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}

# The plain build of scripts/test and scripts/demo (shared, so the demo after
# the tests builds nothing): optimised, no debug info, warnings are errors.
CI_BUILD_ARGS=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"
               -DSAIL_TINKER_WERROR=ON)
