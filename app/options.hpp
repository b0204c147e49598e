// The configuration of every subcommand: the [sail] [pool] [completer] [http]
// [resolver] [cluster] [webhook] [pricing] [log] groups of caf-application.ini and of
// `--group.key=value` arguments, bound directly to the fields of the options
// structs (runtime_options and its parts, cluster_options). Their defaults
// and range checks (validate()) live in the structs only; this file adds the
// keys and the few settings that are not a field (a file to read, a policy
// name, a per-window override). docs/operations.md lists every key.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <caf/config_option_set.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/actors/cluster_options.hpp"
#include "sail_tinker/actors/runtime.hpp"

namespace sail::app {

/// [log] (the --log-level / --log-format flags win).
struct log_settings {
  std::string level;
  std::string format;
};

/// Settings that make_runtime_options turns into options.
struct config_extras {
  /// [sail] model-table: JSON file read into runtime_options::models.
  std::string model_table_file;
  /// [completer] group-policy: fail_group | partial; "" = the subcommand's
  /// default (rollout: partial).
  std::string group_policy;
  /// [pool] webhook-first-poll / webhook-poll: the safety-net timing of every
  /// window (0: each window's own).
  caf::timespan webhook_first_poll{0};
  caf::timespan webhook_poll{0};
  /// [pricing] file: the prices file (rollout/pricing.hpp); `rollout
  /// --prices` wins. Empty: no prices (no costs, no USD budget).
  std::string prices_file;

  caf::error validate() const;
};

/// Everything the configuration sets. The environment (keys, endpoints,
/// proxies) is added by make_runtime_options.
struct app_options {
  runtime_options runtime;
  /// Timeouts and attempts only; nodes and configuration come from flags.
  cluster_options cluster;
  config_extras extras;
  log_settings log;
};

/// The option groups this application registers (checked strictly by
/// parse_caf_config).
const std::vector<std::string>& app_option_groups();

/// Binds every key of app_option_groups() to its field of `o`.
void add_app_options(caf::config_option_set& opts, app_options& o);

/// The configured runtime options plus the environment (SAIL_BASE_URL etc.;
/// `base_url` overrides it), the model table file, the group policy and the
/// per-window webhook timing; then runtime_options::validate().
caf::expected<runtime_options> make_runtime_options(const app_options& o,
                                                    const std::optional<std::string>& base_url);

} // namespace sail::app
