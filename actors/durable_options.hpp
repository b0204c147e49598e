// What makes a completer durable (actors/durable_completer.hpp): the run and
// the step. Kept apart so that the runtime's and the cluster's headers need
// neither the journal nor the durable run.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "sail_tinker/net/wire_options.hpp"

namespace sail::rollout {
class durable_run;
/// A durable run, shared by its completers and its owner.
using run_handle = std::shared_ptr<durable_run>;
} // namespace sail::rollout

namespace sail {

struct durable_options {
  rollout::run_handle run;
  /// The step label (a trainer's step number, as text).
  std::string step;
  /// The adapter version label; default: the Tinker checkpoint path, else
  /// the LoRA name (rollout::adapter_identity).
  std::optional<std::string> version;
  /// The unpublished wire details the durable front encodes create bodies
  /// with (it encodes them itself, so that they are journaled before they are
  /// sent). nullopt: runtime::make_durable_completer takes the runtime's
  /// [wire]; through a cluster, the defaults -- set it to the service nodes'
  /// [wire] when they differ (docs/cluster.md).
  std::optional<wire_options> wire;
};

} // namespace sail
