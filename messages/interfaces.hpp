// The typed actor interfaces of sail-tinker, declared in one place. Behaviours
// live in actors/. Hand out the narrowest handle that does the job.
#pragma once

#include <caf/typed_actor.hpp>
#include <caf/replies_to.hpp>

#include "sail_tinker/messages/fwd.hpp"
#include "sail_tinker/messages/types.hpp"

namespace sail {

/// What trainers see: local completers, remote completers and the cluster
/// balancer all speak it, so trainer code cannot tell them apart.
///
/// - sample: one sample -> tokens_with_logprobs (or a typed error).
/// - sample_group: n samples of one prompt sharing a prompt_cache_key -> one
///   group_result with n outcomes (GRPO's shape).
/// - cancel: stops the sample whose key, or the group whose group_id, matches;
///   its requester receives a `cancelled` error.
/// - stats: counters of the completer.
using completer_actor = caf::typed_actor<
  caf::replies_to<atom::sample, sample_request>::with<tokens_with_logprobs>,
  caf::replies_to<atom::sample_group, sample_request, uint32_t>::with<group_result>,
  caf::reacts_to<atom::cancel, std::string>,
  caf::replies_to<atom::stats>::with<completer_stats>>;

/// The supervised pool of HTTP workers: creates a background response for an
/// encoded job, polls it to completion, and replies with the decoded result.
/// cancel stops the job with that Idempotency-Key (or every job of a group).
using pool_actor = caf::typed_actor<
  caf::replies_to<atom::submit, sail_job>::with<tokens_with_logprobs>,
  caf::reacts_to<atom::cancel, std::string>,
  caf::replies_to<atom::stats>::with<completer_stats>>;

/// Tinker REST: optional TTL, then the signed archive URL.
using resolver_actor = caf::typed_actor<
  caf::replies_to<atom::resolve, resolve_request>::with<signed_url>>;

/// Published by a service node: obtain a completer for a configuration
/// (validated on the node; equal configurations share one completer), and
/// the node's completion webhook (empty when it has no receiver), which a
/// cluster pins to the samples it sends there (docs/cluster.md).
using completer_service_actor = caf::typed_actor<
  caf::replies_to<atom::obtain, completer_config>::with<completer_actor, webhook_endpoint>>;

/// The driver of a rollout run (actors/rollout_driver.hpp). sample: send one
/// sample (ticket, request) to the completer; cancel: cancel everything in
/// flight and refuse new samples; accepted (from workers): forward a
/// response id to the run's loop.
using run_driver_actor = sample_observer_actor::extend<
  caf::reacts_to<atom::sample, uint64_t, sample_request>,
  caf::reacts_to<atom::cancel, std::string>>;

} // namespace sail
