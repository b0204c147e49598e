// validate() of the actors' options structs: the one place where their
// ranges are checked (their defaults are in the headers). Errors name the
// option as caf-application.ini spells it; the Python binding renames them.
#include <limits>

#include "sail_tinker/actors/completer.hpp"
#include "sail_tinker/actors/resolver.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/worker_pool.hpp"
#include "sail_tinker/messages/option_check.hpp"

namespace sail {

using namespace option_check;

namespace {

constexpr double unbounded = std::numeric_limits<double>::infinity();

} // namespace

caf::error window_timing::validate(const std::string& prefix) const {
  return first_error(non_negative(first_poll, prefix + "first-poll"),
                     non_negative(max_poll, prefix + "max-poll"),
                     positive(deadline, prefix + "deadline"),
                     non_negative(webhook_first_poll, prefix + "webhook-first-poll"),
                     non_negative(webhook_poll, prefix + "webhook-poll"));
}

caf::error pool_options::validate(const std::string& prefix) const {
  if (auto err = first_error(
        within(workers, 1, 1024, prefix + "workers"),
        at_least(max_in_flight, 1, prefix + "max-in-flight"),
        at_least(max_dispatch_attempts, 1, prefix + "max-dispatch-attempts"),
        positive(restart_window, prefix + "restart-window"),
        positive(call_timeout, prefix + "call-timeout"),
        within(poll_growth, 1.0, true, unbounded, false, prefix + "poll-growth"),
        within(poll_jitter, 0.0, true, 1.0, false, prefix + "poll-jitter"),
        default_timing.validate(prefix + "default-window."),
        retry.validate(prefix + "retry-"), adaptive.validate(prefix + "adaptive-"),
        retry_budget.validate(prefix + "retry-budget-"), breaker.validate(prefix + "breaker-")))
    return err;
  for (auto& [name, timing] : windows)
    if (auto err = timing.validate(prefix + "windows." + name + "."))
      return err;
  return caf::none;
}

caf::error completer_options::validate(const std::string& prefix) const {
  return first_error(at_least(max_group_size, 1, prefix + "max-group-size"),
                     positive(resolve_timeout, prefix + "resolve-timeout"));
}

caf::error resolver_options::validate(const std::string& prefix) const {
  // No sample deadline bounds the resolver's retries: max_attempts must.
  return first_error(positive(call_timeout, prefix + "call-timeout"),
                     positive(refresh_margin, prefix + "refresh-margin"),
                     at_least(retry.max_attempts, 1, prefix + "max-attempts"),
                     retry.validate(prefix));
}

caf::error runtime_options::validate() const {
  return first_error(within(io_threads, 1, 256, "sail.io-threads"),
                     positive(shutdown_grace, "sail.shutdown-grace"), pool.validate("pool."),
                     http.validate("http."), resolver.validate("resolver."),
                     completer.validate("completer."), wire.validate("wire."),
                     webhook.enabled ? webhook.validate("webhook.") : caf::error{});
}

} // namespace sail
