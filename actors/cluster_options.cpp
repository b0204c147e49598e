#include "sail_tinker/actors/cluster_options.hpp"

#include <cmath>
#include <string>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/option_check.hpp"

namespace sail {

caf::error cluster_options::validate(const std::string& prefix) const {
  using namespace option_check;
  if (auto err = first_error(positive(connect_timeout, prefix + "connect-timeout"),
                             positive(obtain_timeout, prefix + "obtain-timeout"),
                             positive(request_timeout, prefix + "request-timeout"),
                             positive(queue_timeout, prefix + "queue-timeout"),
                             positive(stats_timeout, prefix + "stats-timeout"),
                             at_least(max_routes, 1, prefix + "max-attempts")))
    return err;
  if (retry_min.count() <= 0 || retry_max < retry_min)
    return invalid_argument(prefix + "retry-min", "need 0 < " + prefix + "retry-min <= "
                                                    + prefix + "retry-max");
  return caf::none;
}

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
  return opts.validate();
}

} // namespace sail
