// A step sampler: training steps that do not wait for the slowest sample,
// without throwing away anything Sail billed (docs/architecture.md "Step
// sampler").
//
//   auto run = sail::rollout::durable_run::open("run.journal", "run-1");
//   auto s = sail::step_sampler::open(sys, *run, prompts, {.group_size = 8,
//                                     .groups_per_step = 64, .overprovision = 0.25});
//   for (...) {
//     auto batch = (*s)->next_step({completer, cfg, "v7"});  // K complete groups
//     train(batch->groups);            // every member tagged with its version
//   }
//   auto rest = (*s)->drain();         // everything still in flight
//
// Over-provisioning. A step keeps ceil(K * (1 + overprovision)) groups open
// (launched, not yet delivered) and returns as soon as K of them are
// complete. The others stay in flight: the next call delivers them first
// (oldest first), tagged with the adapter version they were sampled with.
// Sail has no cancel endpoint, so nothing is cancelled: a group whose
// version is more than max_staleness versions behind the current one goes
// to the batch's `stale` list, a failed group to `failed` (with the members
// it has): every billed member reaches the trainer.
//
// Groups and keys. Each group is a step of the durable run labelled
// "grp-<index>-<prompt id>" (index: its position in the prompt list), its
// members that step's calls in order: the durable completer derives their
// keys (rollout/durable_run.hpp). A member that fails after the completer's
// retries is replaced by another call of the same group -- the next
// occurrence, so a new key, deterministic -- up to max_refills per group; a
// structural failure (invalid_argument, a 4xx other than 408/409/429) fails
// the group at once with its error.
//
// Journal and resume. The delivery of a step is acknowledged by the next
// call (next_step, drain or close): the trainer has finished the step. The
// acknowledgement is journaled ("delivered/<label>" rows) and committed
// before anything else happens. Opened again on the same run, the sampler
// skips acknowledged groups, re-launches the others in order (their members
// come from the journal, re-attach or are re-sent under their keys: nothing
// created twice) and continues the step count after the last acknowledged
// step; a batch that was returned but never acknowledged is delivered again.
// A resumed group whose version is not the current target's waits until a
// target of its version is given (attach()); drain() fails it otherwise.
//
// Threading: one owner thread calls the methods (blocking); group actors
// report on CAF threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/net/wire_options.hpp"
#include "sail_tinker/rollout/durable_run.hpp"

namespace sail {

/// One prompt of the stream: its id and its request (prompt, stop, cap; the
/// key and group fields are derived).
struct group_prompt {
  std::string id;
  sample_request request;
};

struct step_sampler_options {
  /// Members per group (n).
  uint32_t group_size = 8;
  /// Complete groups per step (K).
  uint32_t groups_per_step = 64;
  /// Extra groups kept in flight, as a fraction of K (0: launch K, wait for all).
  double overprovision = 0.25;
  /// Versions a delivered group may lag behind the current target.
  uint32_t max_staleness = 1;
  /// Replacement members per group before the group fails.
  uint32_t max_refills = 8;

  /// invalid_argument naming the bad option (prefix + name).
  caf::error validate(const std::string& prefix = "sampler.") const;
};

/// What a step samples with: a completer for `config` (not durable: the
/// sampler wraps it) and the adapter version label (empty:
/// rollout::adapter_identity(config)).
struct sampler_target {
  completer_actor completer;
  completer_config config;
  std::string version;
  /// What the groups' durable fronts encode create bodies with
  /// (durable_options::wire): the runtime's [wire]; nullopt: the defaults.
  std::optional<wire_options> wire = std::nullopt;
};

struct sampled_group {
  std::string prompt_id;
  uint64_t index = 0;  ///< position in the prompt list
  std::string label;   ///< its step label in the durable run
  /// Completed members in completion order (a failed group: those it has).
  std::vector<tokens_with_logprobs> members;
  std::string version;          ///< the adapter version that sampled it
  uint64_t launched_step = 0;   ///< the step during which it was launched
  uint64_t step = 0;            ///< the step it is delivered in
  uint32_t staleness = 0;       ///< versions behind the step's version
  uint32_t refills = 0;         ///< replacement members
  caf::error error;             ///< failed groups
};

struct step_batch {
  uint64_t step = 0;
  std::string version;
  /// Up to K groups within max_staleness, oldest launch first.
  std::vector<sampled_group> groups;
  std::vector<sampled_group> stale;
  std::vector<sampled_group> failed;
};

struct step_sampler_stats {
  uint64_t launched = 0;   ///< groups launched (this process)
  uint64_t resumed = 0;    ///< of which re-launched from the journal
  uint64_t skipped = 0;    ///< acknowledged in an earlier process
  uint64_t delivered = 0;  ///< groups returned (groups + stale + failed)
  uint64_t stale = 0;
  uint64_t failed = 0;
  uint64_t refills = 0;
  uint64_t members_completed = 0;  ///< member results received (billed)
  uint64_t members_delivered = 0;  ///< member results returned
  uint64_t in_flight = 0;          ///< groups launched, not yet complete
  uint64_t staleness_sum = 0;      ///< over delivered groups' members
};

class step_sampler {
public:
  /// invalid_argument for bad options, a missing run, an empty prompt list
  /// or duplicate prompt ids; the run's lookup errors.
  static caf::expected<std::unique_ptr<step_sampler>>
  open(caf::actor_system& sys, rollout::run_handle run, std::vector<group_prompt> prompts,
       step_sampler_options opts);

  /// Acknowledges nothing (close() does): the last batch of a sampler
  /// destroyed without close() is delivered again on resume. Open groups
  /// keep running to their end (their results are journaled).
  ~step_sampler();

  step_sampler(const step_sampler&) = delete;
  step_sampler& operator=(const step_sampler&) = delete;

  /// Acknowledges the previous batch, launches up to the provisioned count
  /// with `target`, and returns K complete groups (fewer once the prompts
  /// run out). invalid_argument for a target without a completer; the
  /// journal's error if the acknowledgement cannot be committed.
  caf::expected<step_batch> next_step(const sampler_target& target);

  /// Makes `target` known for resumed groups of its version (no step).
  void attach(const sampler_target& target);

  /// Acknowledges the previous batch, waits for every open group and
  /// returns them all (a step of its own); launches nothing new.
  caf::expected<step_batch> drain();

  /// Acknowledges the last batch. Idempotent.
  caf::error close();

  step_sampler_stats stats() const;

  /// The next step number.
  uint64_t step() const;

  struct impl;

private:
  explicit step_sampler(std::shared_ptr<impl> p);
  std::shared_ptr<impl> p_;
};

} // namespace sail
