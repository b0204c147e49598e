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
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/messages/interfaces.hpp"

namespace sail {

/// host:port of a service node.
struct node_address {
  std::string host;
  uint16_t port = 0;

  /// "host:port" ("[v6]:port" for IPv6 literals).
  std::string to_string() const;

  friend bool operator==(const node_address&, const node_address&) = default;
};

/// Parses "host:port" or "[v6]:port"; invalid_argument naming `field`.
caf::expected<node_address> parse_node_address(std::string_view text,
                                                std::string field = "nodes");

/// Parses "host:port,host:port,..." (no duplicates, at least one).
caf::expected<std::vector<node_address>> parse_node_list(std::string_view text,
                                                         std::string field = "nodes");

struct cluster_options {
  std::vector<node_address> nodes;
  /// The configuration every node builds a completer for (validated by the
  /// nodes; the cluster only refuses what can never cross a link).
  completer_config config;
  transport_security security = transport_security::automatic;
  /// One connect attempt (TCP + TLS + BASP handshake).
  caf::timespan connect_timeout = std::chrono::seconds(10);
  /// The obtain request after connecting.
  caf::timespan obtain_timeout = std::chrono::seconds(10);
  /// One sample or group on one node. Must exceed the node's own deadline
  /// (window deadline + margin), so the node fails first and typed; the
  /// default suits every completion window.
  caf::timespan request_timeout = std::chrono::hours(25);
  /// Reconnect backoff: first delay, doubled per failed attempt up to max.
  caf::timespan retry_min = std::chrono::milliseconds(100);
  caf::timespan retry_max = std::chrono::seconds(10);
  /// How long a sample waits while no node is ready before it fails with
  /// node_down.
  caf::timespan queue_timeout = std::chrono::seconds(60);
  /// Dispatches per sample (first send + re-routes) before it fails.
  uint32_t max_attempts = 8;
  /// Timeout of the per-node stats requests.
  caf::timespan stats_timeout = std::chrono::seconds(5);
  /// Seed of the tie-break (0: random).
  uint64_t seed = 0;
};

/// Refuses options that cannot work (no nodes, zero timeouts, non-finite
/// sampling values that must never reach a link).
caf::error validate(const cluster_options& opts);

enum class node_state : uint8_t {
  connecting,  ///< first attempt (or reconnect) under way
  ready,       ///< connected, completer obtained
  lost,        ///< not connected; retrying with backoff
  stopped,     ///< the cluster shut down
};

const char* to_string(node_state x) noexcept;

/// What the trainer side knows about one node.
struct node_status {
  node_address address;
  node_state state = node_state::connecting;
  /// Samples (a group counts n) dispatched to the node and not yet answered.
  uint64_t in_flight = 0;
  /// Samples answered successfully through this node.
  uint64_t completed = 0;
  /// Final errors answered through this node.
  uint64_t failed = 0;
  /// Samples taken off this node because it was lost, then re-routed.
  uint64_t rerouted = 0;
  /// Successful connections (obtain included) and connection losses.
  uint64_t connects = 0;
  uint64_t losses = 0;
  /// Failed connect / obtain attempts.
  uint64_t failed_attempts = 0;
  /// The last connect, obtain or loss error (rendered), empty if none.
  std::string last_error;
};

/// Thread-safe view of the cluster's nodes, updated by its actors.
class cluster_monitor {
public:
  explicit cluster_monitor(const std::vector<node_address>& nodes);

  std::vector<node_status> snapshot() const;

  /// Applies `fn` to node `idx` and wakes waiters.
  void update(size_t idx, const std::function<void(node_status&)>& fn);

  /// Waits until `pred(snapshot)` holds; false after `timeout`.
  bool wait(const std::function<bool(const std::vector<node_status>&)>& pred,
            caf::timespan timeout) const;

private:
  mutable std::mutex mtx_;
  mutable std::condition_variable cv_;
  std::vector<node_status> nodes_;
};

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

  /// Future API (a short-lived helper actor per call; callable from any
  /// non-actor thread). The request timeout is request_timeout + queue_timeout.
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

  caf::actor_system& sys_;
  cluster_options opts_;
  std::shared_ptr<cluster_monitor> monitor_;
  completer_actor balancer_;
  bool stopped_ = false;
};

} // namespace sail
