// The typed actor interfaces of sail-tinker, declared in one place: first the
// published ones (what trainers and other nodes hold), then the internal ones
// (what actors of one node use among themselves; "internal: not for
// trainers"). Behaviours live in actors/. Hand out the narrowest handle that
// does the job.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/duration.hpp>
#include <caf/error.hpp>
#include <caf/replies_to.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/messages/fwd.hpp"
#include "sail_tinker/messages/types.hpp"

namespace sail {

// -- published ----------------------------------------------------------------------

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

// -- internal: not for trainers ----------------------------------------------------
//
// The interfaces actors use among themselves on one node (their timers,
// workers' reports, the cluster's bookkeeping). No handle of these types is
// published or handed to a trainer: an actor that has one is handed out, if
// at all, under a published interface above. The message types that only
// travel inside one process (shared_job, sample_report, poll_plan,
// webhook_delivery, http_completion, once_callback) are only named here;
// each is defined, and marked CAF_ALLOW_UNSAFE_MESSAGE_TYPE, in its own
// header.

/// A job as the pool stores it and hands it to a worker: one immutable copy
/// shared by both (the pool keeps it for re-dispatch after a worker death, so
/// every dispatch sends the byte-identical body under the same key). Local
/// only: it never crosses a node boundary.
using shared_job = std::shared_ptr<const sail_job>;

struct sample_report;       // actors/worker_pool.hpp
struct poll_plan;           // net/poll_planner.hpp
struct webhook_delivery;    // net/webhook_receiver.hpp
struct http_completion;     // actors/async_http.hpp
template <class T>
class once_callback;        // actors/bridge.hpp

/// A completer (actors/completer.cpp): the public interface plus its refresh
/// timer (carrying the generation it was armed with).
using completer_impl_actor
  = completer_actor::extend<caf::reacts_to<atom::refresh, uint64_t>>;

/// A durable completer (actors/durable_completer.cpp): the public interface
/// plus the journal's commit notice (submit, whether the commit succeeded)
/// and the observer of accepted creates (sample_observer_actor's message).
using durable_impl_actor = completer_actor::extend<
  caf::reacts_to<atom::submit, bool>,
  caf::reacts_to<atom::accepted, std::string, std::string>>;

/// The metering front (actors/metering.hpp) speaks exactly the interface of
/// the completer it wraps, so a trainer cannot tell one from the other.
using metering_actor = completer_actor;

/// The resolver (actors/resolver.cpp): the public interface plus its HTTP
/// completions and delayed steps (resolution id, generation).
using resolver_impl_actor = resolver_actor::extend<
  caf::reacts_to<atom::http_done, http_completion>,
  caf::reacts_to<atom::step, uint64_t, uint64_t>>;

/// The worker pool's supervisor (actors/worker_pool.hpp): the public
/// interface plus what workers report, the pool's timers and the webhook
/// receiver's deliveries. A "dispatch" is one placement of a pool job on a
/// worker slot (the first, and each re-dispatch after a worker death); a
/// worker's report counts only for the job's current dispatch.
using pool_impl_actor = pool_actor::extend<
  // job id, dispatch, result, what it cost
  caf::reacts_to<atom::done, uint64_t, uint32_t, tokens_with_logprobs, sample_report>,
  caf::reacts_to<atom::failed, uint64_t, uint32_t, caf::error>,
  // job id, dispatch, response id: the create of a job whose body names this
  // node's webhook receiver was answered (deliveries routable)
  caf::reacts_to<atom::created, uint64_t, uint32_t, std::string>,
  // an authenticated delivery; a refused one (webhook_rejection's name)
  caf::reacts_to<atom::webhook, webhook_delivery>,
  caf::reacts_to<atom::rejected, std::string>,
  // a worker's verdict on a forwarded delivery it did not apply: "duplicate"
  // (its sample had just finished) or "ignored" (not a terminal response)
  caf::reacts_to<atom::webhook, std::string>,
  // a 429/529: pause new creates for this long
  caf::reacts_to<atom::pause, caf::timespan>,
  caf::reacts_to<atom::resume>,
  // an HTTP retry happened, with this cause
  caf::reacts_to<atom::retried, std::string>>;

/// An HTTP worker of the pool (actors/http_worker.hpp).
using http_worker_actor = caf::typed_actor<
  // job id, dispatch, the job (shared with the pool), its poll plan (empty:
  // configured timing)
  caf::reacts_to<atom::submit, uint64_t, uint32_t, shared_job, poll_plan>,
  caf::reacts_to<atom::cancel, uint64_t>,
  // a delivery for job id
  caf::reacts_to<atom::webhook, uint64_t, webhook_delivery>,
  caf::reacts_to<atom::http_done, http_completion>,
  // next HTTP step of a job (job id, generation)
  caf::reacts_to<atom::step, uint64_t, uint64_t>,
  // timer: run the delayed steps that are due
  caf::reacts_to<atom::step>,
  // timer: fail the jobs whose deadline passed
  caf::reacts_to<atom::deadline>>;

/// What a service node publishes (actors/service.hpp): obtain
/// (completer_service_actor) plus the node's own counters (the worker
/// pool's: every sample of every completer of the node). A trainer only
/// requires completer_service_actor, which this interface includes.
using service_actor = completer_service_actor::extend<
  caf::replies_to<atom::stats>::with<completer_stats>>;

/// Whatever answers the counters of a node (app/metrics.hpp's /metrics
/// source): a completer, or a service front.
using stats_actor = caf::typed_actor<caf::replies_to<atom::stats>::with<completer_stats>>;

/// What a node proxy reports to the balancer (actors/node_proxy.hpp): its
/// node became routable (node_up, with the node's webhook) or stopped being
/// routable, with the reason (node_lost).
using node_events_actor = caf::typed_actor<
  caf::reacts_to<atom::node_up, uint32_t, webhook_endpoint>,
  caf::reacts_to<atom::node_lost, uint32_t, caf::error>>;

/// A node proxy: the public interface plus its reconnect timer.
using node_proxy_actor = completer_actor::extend<caf::reacts_to<atom::reconnect, uint64_t>>;

/// The cluster balancer (actors/balancer.hpp): the public interface plus the
/// proxies' reports and the queue timer.
using balancer_actor = completer_actor::extend_with<node_events_actor>::extend<
  caf::reacts_to<atom::expire, uint64_t, uint64_t>>;

/// The driver of a rollout run (actors/rollout_driver.hpp). sample: send one
/// sample (ticket, request) to the completer; cancel: cancel everything in
/// flight and refuse new samples; accepted (from workers): forward a
/// response id to the run's loop.
using run_driver_actor = sample_observer_actor::extend<
  caf::reacts_to<atom::sample, uint64_t, sample_request>,
  caf::reacts_to<atom::cancel, std::string>>;

/// The bridge from non-actor code (token_completer, cluster's futures, the
/// Python binding) to the actors (actors/bridge.hpp): each call names its
/// destination, its request, its timeout (no_call_timeout: none) and the
/// callback of its reply, which runs exactly once.
/// - sample: atom::sample to a completer -> tokens_with_logprobs.
/// - sample_group: atom::sample_group to a completer -> group_result.
/// - resolve: atom::resolve to a resolver -> signed_url.
using bridge_actor = caf::typed_actor<
  caf::reacts_to<atom::sample, completer_actor, sample_request, caf::duration,
                 once_callback<tokens_with_logprobs>>,
  caf::reacts_to<atom::sample_group, completer_actor, sample_request, uint32_t,
                 caf::duration, once_callback<group_result>>,
  caf::reacts_to<atom::resolve, resolver_actor, resolve_request, caf::duration,
                 once_callback<signed_url>>>;

} // namespace sail
