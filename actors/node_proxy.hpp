// One node of a cluster, seen from the trainer side: the node proxy connects
// to the node's published service front, obtains a completer for the
// cluster's configuration and forwards the balancer's requests to it.
//
// - It connects through the middleman actor (or the OpenSSL manager's) with
//   connect_atom, never the blocking remote_actor, checks the published
//   interface, obtains a completer, monitors the node's front and completer,
//   and reconnects with exponential backoff.
// - When the node is lost (down_msg: socket closed, or heartbeat timeout for
//   a frozen node) it reports node_lost to the balancer FIRST and then fails
//   ALL of its in-flight requests at once with node_down (same sender, so the
//   balancer sees them in that order and re-routes them to other nodes).
// - Link errors become node_down (re-routable), a CAF timeout a typed
//   timeout; the node's own errors pass unchanged.
//
// Internal to the cluster (actors/balancer.cpp spawns the proxies); trainer
// code uses actors/cluster.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include <caf/actor_addr.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/result.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/actors/cluster_monitor.hpp"
#include "sail_tinker/actors/cluster_options.hpp"
#include "sail_tinker/messages/interfaces.hpp"

namespace sail {

struct node_proxy_state;

using node_proxy_ptr = node_proxy_actor::stateful_pointer<node_proxy_state>;

struct node_proxy_state {
  static inline const char* name = "sail.node_proxy";

  explicit node_proxy_state(node_proxy_ptr self) : self(self) {
  }

  node_proxy_ptr self;
  uint32_t index = 0;
  std::shared_ptr<const cluster_options> opts;
  std::shared_ptr<cluster_monitor> mon;
  node_events_actor balancer;
  bool tls = false;
  bool ready = false;
  /// Bumped per connect attempt and per loss: late answers of an older
  /// attempt are ignored.
  uint64_t generation = 0;
  caf::actor_addr front;
  completer_actor remote;
  caf::timespan backoff{};
  uint64_t next_id = 0;
  /// In-flight requests to the node: each fails exactly once, at the latest
  /// when the node is lost or the proxy exits.
  std::unordered_map<uint64_t, std::function<void(caf::error)>> inflight;

  const node_address& addr() const {
    return opts->nodes[index];
  }

  // -- handlers (one per message of node_proxy_actor) ---------------------------------

  caf::result<tokens_with_logprobs> sample(sample_request& req);
  caf::result<group_result> sample_group(sample_request& req, uint32_t n);
  void cancel(std::string& what);
  caf::result<completer_stats> stats();
  /// The reconnect timer of attempt `gen`.
  void reconnect(uint64_t gen);
  /// The node's front or completer went down.
  void on_down(const caf::down_msg& dm);
  /// The balancer stops the proxy: open requests fail with cancelled.
  void on_exit(const caf::exit_msg& em);

  // -- connection ---------------------------------------------------------------------

  /// Starts attempt ++generation: connect, check the interface, obtain.
  void connect();
  /// The middleman answered attempt `gen`'s connect.
  void connected(uint64_t gen, caf::strong_actor_ptr& ptr, std::set<std::string>& ifs);
  /// The node answered attempt `gen`'s obtain.
  void obtained(uint64_t gen, completer_actor c, webhook_endpoint hook);
  /// A connect or obtain attempt failed: report, retry later.
  void attempt_failed(uint64_t gen, caf::error err);
  /// The node went away: fail everything in flight at once, then reconnect.
  void node_lost(const caf::error& why);
  void schedule_reconnect();
  void drop_monitors();
  void fail_all(const caf::error& err);

  // -- requests to the node -----------------------------------------------------------

  /// Errors of the link itself become node_down (re-routable); a CAF timeout
  /// becomes a typed timeout; the node's own (sail) errors pass unchanged.
  caf::error link_error(caf::error err) const;

  /// Sends xs to the node's completer and answers with its reply; the
  /// request is in `inflight` until then.
  template <class T, class... Ts>
  caf::result<T> forward(caf::timespan timeout, Ts... xs);
};

/// The proxy of node `index` of `opts`; it starts connecting at once and
/// reports to `balancer`.
node_proxy_actor::behavior_type node_proxy(node_proxy_ptr self, uint32_t index,
                                           std::shared_ptr<const cluster_options> opts,
                                           std::shared_ptr<cluster_monitor> mon,
                                           node_events_actor balancer, bool tls);

} // namespace sail
