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
