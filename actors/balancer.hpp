// The cluster's balancer: speaks exactly completer_actor in front of one node
// proxy per node (actors/node_proxy.hpp), so trainer code cannot tell a
// cluster from a local completer.
//
// - Balancing: least in flight among ready nodes, random tie-break. Samples
//   wait (bounded by queue_timeout) while no node is ready; if every node
//   rejected the configuration they fail at once with that rejection.
// - Keys: the balancer assigns the Idempotency-Key (and a group's group id)
//   before the first send, so a re-route reuses it and Sail replays a sample
//   the lost node had already submitted instead of running it again.
// - Webhooks: at the first send the balancer pins the node's webhook (or
//   "none") to the sample, so every node encodes the same create body under
//   its key; a re-routed sample's webhook still goes to the first node, and
//   the node holding it now polls (docs/cluster.md).
// - Re-routing: node_down, a node's own `cancelled` (the node shut down) and a
//   proxy that is gone send the work to another node, at most max_routes
//   routes (first send + re-routes) per sample; an answer of an earlier
//   route is ignored.
// - cancel goes to every node; stats sum the ready nodes' completer counters.
//
// Internal to the cluster (spawn_cluster in actors/cluster.cpp spawns it);
// trainer code uses actors/cluster.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/uuid/random_generator.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/result.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/actors/cluster_monitor.hpp"
#include "sail_tinker/actors/cluster_options.hpp"
#include "sail_tinker/actors/node_proxy.hpp"
#include "sail_tinker/messages/interfaces.hpp"

namespace sail {

/// Margin of a balancer -> proxy request over the proxy's own timeout, so the
/// proxy always answers first (typed).
inline constexpr auto proxy_margin = std::chrono::seconds(30);

/// A caller's sample or group, from its arrival until its one answer.
struct routed_request {
  bool group = false;
  sample_request req;
  uint32_t n = 1;
  caf::typed_response_promise<tokens_with_logprobs> rp_one;
  caf::typed_response_promise<group_result> rp_group;
  /// Routes so far (first send + re-routes); also the id of the current
  /// route.
  uint32_t routes = 0;
  /// Node holding the request now, -1 if none.
  int32_t node = -1;
  bool cancelled = false;
  bool queued = false;
  uint64_t queue_gen = 0;
  caf::error last_error;
  /// Nodes that answered this request with a re-routable error (node_down,
  /// cancelled by a shutdown): skipped while another ready node is left, so
  /// a node whose pool ended -- it answers at once and so looks least
  /// loaded -- does not take every route.
  std::vector<int32_t> refused_by;

  uint64_t weight() const {
    return group ? n : 1;
  }
};

/// The balancer's view of one node.
struct node_entry {
  node_proxy_actor proxy;
  /// The node's webhook (from its obtain answer; empty: none).
  webhook_endpoint webhook;
  bool ready = false;
  bool alive = true;
  uint64_t in_flight = 0;
  caf::error last_error;
};

struct balancer_state;

using balancer_ptr = balancer_actor::stateful_pointer<balancer_state>;

struct balancer_state {
  static inline const char* name = "sail.cluster";

  explicit balancer_state(balancer_ptr self) : self(self) {
  }

  balancer_ptr self;
  std::shared_ptr<const cluster_options> opts;
  std::shared_ptr<cluster_monitor> mon;
  std::vector<node_entry> nodes;
  std::unordered_map<uint64_t, routed_request> requests;
  std::deque<uint64_t> queue;
  uint64_t next_request = 0;
  uint64_t next_queue_gen = 0;
  bool stopping = false;
  std::mt19937_64 rng;
  boost::uuids::random_generator uuids;

  std::string new_key();

  /// Seeds the tie-break and spawns (and monitors) one proxy per node.
  void start(bool tls);

  // -- handlers (one per message of balancer_actor) -----------------------------------

  caf::result<tokens_with_logprobs> sample(sample_request& req);
  caf::result<group_result> sample_group(sample_request& req, uint32_t n);
  void cancel(const std::string& what);
  caf::result<completer_stats> stats();
  /// Proxy `idx` is connected (its node's webhook `hook`): route to it,
  /// drain the queue.
  void node_up(uint32_t idx, webhook_endpoint& hook);
  /// Proxy `idx` lost its node (or failed to connect) with `err`.
  void node_lost(uint32_t idx, caf::error& err);
  /// The queue timer of request `id`'s wait number `gen`.
  void expire(uint64_t id, uint64_t gen);
  /// A proxy ended without being told to: take its work elsewhere.
  void on_down(const caf::down_msg& dm);
  /// The cluster shuts down: stop the proxies, fail open work with cancelled.
  void on_exit(const caf::exit_msg& em);

  // -- routing ------------------------------------------------------------------------

  /// Sends request `id` to the node pick() chooses, or queues it.
  void dispatch(uint64_t id);
  /// Least in flight among ready nodes, random tie-break; -1 if none is ready.
  /// The ready node with the fewest samples in flight (ties at random),
  /// preferring nodes not in `avoid`; -1 if none is ready.
  int32_t pick(const std::vector<int32_t>& avoid);
  /// Takes the request off its node (in-flight accounting).
  void release(routed_request& r);
  void enqueue(uint64_t id);
  void drain_queue();
  /// The answer of route `route` of request `id`: deliver, re-route or fail.
  template <class T>
  void on_reply(uint64_t id, uint32_t route, caf::expected<T> res);
  /// Sends route `route` of request `id` to `proxy`.
  template <class T, class... Ts>
  void send_route(const node_proxy_actor& proxy, uint64_t id, uint32_t route, Ts... xs);
  void finish_error(uint64_t id, caf::error err);
  void fail_queue(const caf::error& err);
  /// Every node is down with a rejection of the configuration.
  bool all_rejected() const;
  /// The error for work that cannot be placed: the nodes' common rejection of
  /// the configuration if every node rejected it, else node_down.
  caf::error unavailable(const std::string& why) const;
};

/// The balancer over `opts->nodes`; `tls` selects the OpenSSL manager for the
/// proxies' connects. End it with an exit message.
balancer_actor::behavior_type balancer(balancer_ptr self,
                                       std::shared_ptr<const cluster_options> opts,
                                       std::shared_ptr<cluster_monitor> mon, bool tls);

} // namespace sail
