#include "sail_tinker/rollout/failpoint.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace sail::rollout::failpoint {

namespace {

struct registry {
  std::mutex mtx;
  /// name -> remaining passes before it fires (1 = the next one).
  std::map<std::string, long, std::less<>> remaining;
};

registry& points() {
  static registry r;
  return r;
}

/// 0 = not read yet, 1 = nothing armed, 2 = something armed.
std::atomic<int> armed{0};

void load() {
  auto& r = points();
  std::lock_guard<std::mutex> guard{r.mtx};
  if (armed.load() != 0)
    return;
  const char* env = std::getenv("SAIL_TINKER_FAILPOINT");
  std::string spec = env != nullptr ? env : "";
  size_t pos = 0;
  while (pos < spec.size()) {
    auto comma = spec.find(',', pos);
    auto item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    auto colon = item.rfind(':');
    if (colon != std::string::npos && colon > 0) {
      auto k = std::strtol(item.c_str() + colon + 1, nullptr, 10);
      if (k > 0)
        r.remaining[item.substr(0, colon)] = k;
    }
    if (comma == std::string::npos)
      break;
    pos = comma + 1;
  }
  armed.store(r.remaining.empty() ? 1 : 2);
}

} // namespace

bool fires(std::string_view name) {
  auto state = armed.load(std::memory_order_relaxed);
  if (state == 0) {
    load();
    state = armed.load();
  }
  if (state != 2)
    return false;
  auto& r = points();
  std::lock_guard<std::mutex> guard{r.mtx};
  auto i = r.remaining.find(name);
  if (i == r.remaining.end() || i->second <= 0)
    return false;
  return --i->second == 0;
}

void kill_now() {
  ::raise(SIGKILL);
  ::_exit(137); // not reached
}

} // namespace sail::rollout::failpoint
