// Shared by the two modes of `sail-tinker rollout` (the rollout run of
// rollout_run.cpp and the synthetic load generator of cmd_rollout.cpp): the
// completer defaults, where the samples go (the embedded emulator, Sail, or a
// cluster of service nodes), progress modes and the summary's rows.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/actors/cluster.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/rollout/file_run.hpp"

namespace sail::app {

/// What both modes sample with when --model or --max-tokens is not given
/// (moonshotai/Kimi-K2.6: the model Sail documents).
inline const completer_defaults rollout_completer_defaults{"moonshotai/Kimi-K2.6", 32};

enum class progress_mode { bar, lines, off };

/// --progress auto|bar|lines|off (auto: a bar on a terminal, lines otherwise).
caf::expected<progress_mode> progress_mode_from(const parsed_args& args);

/// Flags of the target, shared by both modes.
std::vector<flag_spec> rollout_target_flags();

std::string fmt(double v, int precision = 1);
double percentile(std::vector<double> xs, double q);
/// "k=v  k=v" of the non-zero entries, "none" if there are none.
std::string render_map(const std::map<std::string, uint64_t>& m);
/// "1m05s", "12.3 s".
std::string fmt_duration(double seconds);

/// Current and peak resident set size of this process in MiB.
std::pair<double, double> rss_mib();

/// Where the samples go, decided from the flags before anything starts.
struct target_plan {
  std::vector<node_address> nodes;
  bool embedded = false;
  emulator::options emu_opts;
  runtime_options opts;
  cluster_options copts;
  /// CAF request timeout of one sample or group (window deadline + margins).
  caf::timespan request_timeout{0};
};

/// Reads --nodes, --base-url, SAIL_API_KEY and the --emu-* flags; validates
/// the completer configuration locally unless nodes judge it.
caf::expected<target_plan> plan_target(const parsed_args& args, const app_options& config,
                                       const completer_config& ccfg);

/// The running target: embedded emulator, runtime or cluster, and the
/// completer handle the rollout talks to.
class rollout_target {
public:
  /// Stops the embedded emulator.
  ~rollout_target();

  /// Starts the embedded emulator (if planned). Call after
  /// block_termination_signals() and before the actor system exists, so its
  /// threads inherit the signal mask.
  caf::error start_emulator(target_plan& plan);

  /// Starts the runtime or the cluster and obtains the completer.
  caf::error start(caf::actor_system& sys, target_plan& plan, const completer_config& ccfg);

  completer_actor completer() const {
    return completer_;
  }

  /// "embedded emulator http://...", a base URL, or "N service node(s)".
  const std::string& description() const {
    return text_;
  }

  /// Stops the cluster or runtime (bounded, idempotent). Must run before the
  /// actor system goes away (stop() does it too).
  void shutdown_actors();

  /// What the target reports for the summary.
  struct report {
    std::optional<completer_stats> counters;
    std::vector<node_status> nodes;
    std::optional<emulator::stats> emulator;
  };

  /// Fetches the completer's counters and stops the cluster/runtime/emulator.
  report stop(caf::actor_system& sys);

private:
  std::unique_ptr<emulator::server> emu_;
  std::unique_ptr<runtime> rt_;
  std::unique_ptr<cluster> cl_;
  completer_actor completer_;
  std::string text_;
  bool stopped_ = false;
};

/// The frame every mode runs in: blocks the termination signals, starts the
/// target (the embedded emulator before the actor system exists, then the
/// runtime or the cluster in it) and returns what `body` returns, the exit
/// code. A target that does not start: its error reported, that exit code.
int run_on_target(app_node_config& cfg, target_plan& plan, const completer_config& ccfg,
                  const std::function<int(caf::actor_system&, rollout_target&)>& body);

using row_fn = std::function<void(const std::string&, const std::string&)>;

/// The summary rows of a target, in order: retries by cause, polls, the circuit
/// breaker and the retry budget, errors by
/// kind (`errors`), one row per node, inference runs and faults injected.
void target_rows(const rollout_target::report& rep,
                 const std::map<std::string, uint64_t>& errors, const row_fn& row);

/// The rollout run (rollout_run.cpp, on rollout/file_run.hpp): `rollout --input ...`.
int run_rollout_input(const parsed_args& args, app_node_config& cfg);

/// The rollout run's settings from its flags (shared with --steps).
caf::expected<rollout::file_run_settings> rollout_run_settings(const parsed_args& args);

/// `rollout --input ... --steps K` (rollout_steps.cpp): a step sampler over
/// a durable run, one output record per group with its step.
int run_rollout_steps(const parsed_args& args, app_node_config& cfg);

/// Flags only the rollout run (--input) takes, rollout_steps_flags() included.
std::vector<flag_spec> rollout_run_flags();

/// Flags of --steps (rollout_steps.cpp).
std::vector<flag_spec> rollout_steps_flags();

} // namespace sail::app
