// Options of a cluster (the trainer side of a set of service nodes) and the
// check that refuses options that cannot work.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/actors/node_address.hpp"
#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/messages/types.hpp"

namespace sail {

/// Which nodes a cluster uses, for which configuration, and how long it waits
/// for them.
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
  /// Routes per sample (first send + re-routes) before it fails. Its keys
  /// kept the older word: `[cluster] max-attempts`, Python's `max_attempts`.
  uint32_t max_routes = 8;
  /// Timeout of the per-node stats requests.
  caf::timespan stats_timeout = std::chrono::seconds(5);
  /// Seed of the tie-break (0: random).
  uint64_t seed = 0;

  /// Refuses timeouts and attempts that cannot work, naming the option
  /// (`prefix` + "connect-timeout", ...). The free validate() below checks
  /// the nodes and the configuration too.
  caf::error validate(const std::string& prefix = "cluster.") const;
};

/// Refuses options that cannot work (no nodes, non-finite sampling values
/// that must never reach a link, and cluster_options::validate()).
caf::error validate(const cluster_options& opts);

} // namespace sail
