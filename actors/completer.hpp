// The completer actor: owns one validated configuration (model, sampling,
// LoRA) and turns typed sample / sample_group messages into encoded Sail jobs
// for the worker pool. One Idempotency-Key per logical sample, made here
// unless the caller brought one (re-routing keeps it).
#pragma once

#include <map>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/wire_options.hpp"

namespace sail {

/// What sample_group replies when a member fails.
enum class group_failure_policy : uint8_t {
  /// The group fails with the first member's error; the rest is cancelled.
  fail_group,
  /// The group succeeds with every member's outcome (result or error).
  partial,
};

struct completer_options {
  group_failure_policy group_policy = group_failure_policy::fail_group;
  /// Largest n of sample_group.
  uint32_t max_group_size = 4096;
  /// Deadline of one sample per completion window; windows not listed use
  /// default_deadline. The runtime fills this from the pool's window timing,
  /// so completer and pool agree.
  std::map<std::string, caf::timespan> window_deadlines;
  caf::timespan default_deadline = std::chrono::minutes(15);
  /// Timeout of a resolve request.
  caf::timespan resolve_timeout = std::chrono::minutes(5);
  /// This node's webhook receiver (the runtime sets it; empty: none). A
  /// sample without a pinned webhook (sample_request::webhook) gets this
  /// one in its body; a sample whose pin names it is polled only as the
  /// safety net.
  webhook_endpoint webhook;
  /// The unpublished wire details the create bodies use (the runtime copies
  /// runtime_options::wire here): the body is encoded where the completer
  /// runs, so on a service node its own [wire] settings apply.
  wire_options wire;

  /// invalid_argument naming the option (`prefix` + "max-group-size", ...)
  /// if out of range.
  caf::error validate(const std::string& prefix = "completer.") const;
};

/// Validates `cfg` (SailTokenCompleter's rules + the model table) and spawns a
/// completer only if it is valid; otherwise returns the typed error and
/// spawns nothing. A configuration with tinker_checkpoint needs a resolver.
caf::expected<completer_actor>
spawn_completer(caf::actor_system& sys, completer_config cfg,
                pool_actor pool, resolver_actor resolver = {},
                const model_table& models = model_table::builtin(),
                completer_options opts = {});

} // namespace sail
