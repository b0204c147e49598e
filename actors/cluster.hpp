// The trainer side of a cluster of service nodes: one proxy actor per node
// and a balancer in front of them that speaks exactly completer_actor, so
// trainer code cannot tell a cluster from a local completer.
//
//   sail::node_config cfg;                            // io + openssl modules
//   caf::actor_system sys{cfg};
//   sail::cluster_options opts;
//   opts.nodes = *sail::parse_node_list("10.0.0.1:4242,10.0.0.2:4242");
//   opts.config = my_completer_config;
//   auto cl = sail::cluster::start(sys, opts);        // connects asynchronously
//   sail::completer_actor c = (*cl)->handle();        // give it to trainer actors
//   (*cl)->wait_ready(1, std::chrono::seconds(30));   // optional
//   ...
//   (*cl)->shutdown();                                // before ~actor_system
//
// Behaviour (docs/cluster.md):
// - Each proxy connects through the middleman actor (or the OpenSSL manager's)
//   with connect_atom, never the blocking remote_actor, checks the published
//   interface, obtains a completer for the configuration, monitors the node's
//   front and completer, and reconnects with exponential backoff.
// - When a node is lost (down_msg: socket closed, or heartbeat timeout for a
//   frozen node) its proxy fails ALL of its in-flight requests at once with
//   node_down; the balancer re-routes them to live nodes with the SAME
//   Idempotency-Key (assigned by the balancer before the first send), so Sail
//   replays a sample the lost node had already submitted instead of running
//   it again. Groups get a key and a group id too (member keys key + "." + i).
// - Balancing: least in flight, random tie-break. Samples wait (bounded by
//   queue_timeout) while no node is ready. cancel goes to every node; stats
//   sum the nodes' completer counters.
//
// Files: node_address.hpp (parsing --nodes), cluster_options.hpp (options and
// their validation), cluster_monitor.hpp (node_status table), node_proxy.hpp
// and balancer.hpp (the actors, internal), this header (spawn_cluster and the
// blocking facade).
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "sail_tinker/actors/durable_options.hpp"
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/actors/bridge.hpp"
#include "sail_tinker/actors/cluster_monitor.hpp"
#include "sail_tinker/actors/cluster_options.hpp"
#include "sail_tinker/actors/node_address.hpp"
#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/messages/interfaces.hpp"

namespace sail {

/// Spawns the balancer and its node proxies (the proxies start connecting at
/// once). The handle speaks completer_actor. End it with an exit message
/// (user_shutdown): it stops its proxies and fails open work with cancelled.
caf::expected<completer_actor> spawn_cluster(caf::actor_system& sys,
                                             cluster_options opts,
                                             std::shared_ptr<cluster_monitor> monitor
                                             = nullptr);

/// Owner of a cluster balancer with blocking helpers for non-actor code.
class cluster {
public:
  using sample_result = caf::expected<tokens_with_logprobs>;
  using group_reply = caf::expected<group_result>;

  /// Validates the options and spawns the cluster. The system needs the io
  /// middleman (node_config); TLS needs the OpenSSL module.
  static caf::expected<std::unique_ptr<cluster>> start(caf::actor_system& sys,
                                                       cluster_options opts);

  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// The balancer: the same interface as a local completer.
  completer_actor handle() const {
    return balancer_;
  }

  /// A durable front on the balancer for the cluster's configuration
  /// (actors/durable_completer.hpp): the run's journal stays in this
  /// process, the nodes receive pre-encoded bodies. End it with an exit
  /// message, or leave it to the shutdown.
  caf::expected<completer_actor> durable_handle(durable_options opts);

  const cluster_options& options() const noexcept {
    return opts_;
  }

  std::vector<node_status> status() const {
    return monitor_->snapshot();
  }

  /// Waits until at least `n` nodes are ready; false after `timeout`.
  bool wait_ready(size_t n, caf::timespan timeout) const;

  /// Waits until `pred(status())` holds; false after `timeout`.
  bool wait_for(const std::function<bool(const std::vector<node_status>&)>& pred,
                caf::timespan timeout) const {
    return monitor_->wait(pred, timeout);
  }

  /// Future API (through the cluster's bridge, actors/bridge.hpp; callable
  /// from any non-actor thread). The call's timeout is request_timeout +
  /// queue_timeout (errc::timeout); after shutdown(): `cancelled`.
  std::future<sample_result> sample(sample_request req);
  std::future<group_reply> sample_group(sample_request req, uint32_t n);
  void cancel(std::string key_or_group);
  /// Sum of the ready nodes' completer counters (blocking, bounded).
  caf::expected<completer_stats> stats();

  /// Stops the balancer and the proxies (bounded); open work fails with
  /// cancelled. Idempotent; call from a non-actor thread before the actor
  /// system goes away.
  void shutdown(caf::timespan grace = std::chrono::seconds(5));

private:
  cluster(caf::actor_system& sys, cluster_options opts);

  /// The bound of a future call.
  caf::timespan call_timeout() const;

  caf::actor_system& sys_;
  cluster_options opts_;
  std::shared_ptr<cluster_monitor> monitor_;
  completer_actor balancer_;
  bridge_actor bridge_;
  std::vector<completer_actor> durables_;
  bool stopped_ = false;
};

} // namespace sail
