#include "sail_tinker/actors/cluster_options.hpp"

#include <cmath>
#include <string>

#include "sail_tinker/messages/error.hpp"

namespace sail {

caf::error validate(const cluster_options& opts) {
  if (opts.nodes.empty())
    return invalid_argument("nodes", "no service node given");
  for (size_t i = 0; i < opts.nodes.size(); ++i) {
    auto& n = opts.nodes[i];
    if (n.host.empty() || n.port == 0)
      return invalid_argument("nodes", "node " + std::to_string(i) + " needs a host and a port");
    for (size_t j = 0; j < i; ++j)
      if (opts.nodes[j] == n)
        return invalid_argument("nodes", "node " + n.to_string() + " is listed twice");
  }
  // A non-finite double must never reach a link (CAF #1107: a failed save
  // poisons the connection); the node validates the rest with its table.
  if (!std::isfinite(opts.config.temperature))
    return invalid_argument("temperature", "temperature must be finite");
  if (!std::isfinite(opts.config.top_p))
    return invalid_argument("top_p", "top_p must be finite");
  using caf::timespan;
  auto positive = [](timespan t) { return t.count() > 0; };
  if (!positive(opts.connect_timeout))
    return invalid_argument("connect_timeout", "must be positive");
  if (!positive(opts.obtain_timeout))
    return invalid_argument("obtain_timeout", "must be positive");
  if (!positive(opts.request_timeout))
    return invalid_argument("request_timeout", "must be positive");
  if (!positive(opts.queue_timeout))
    return invalid_argument("queue_timeout", "must be positive");
  if (!positive(opts.stats_timeout))
    return invalid_argument("stats_timeout", "must be positive");
  if (!positive(opts.retry_min) || opts.retry_max < opts.retry_min)
    return invalid_argument("retry_min", "need 0 < retry_min <= retry_max");
  if (opts.max_attempts == 0)
    return invalid_argument("max_attempts", "must be at least 1");
  return caf::none;
}

} // namespace sail
