// What the trainer side knows about the nodes of a cluster: a thread-safe
// table of node_status rows, written by the cluster's actors and read (or
// waited on) by non-actor code.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <caf/timespan.hpp>

#include "sail_tinker/actors/node_address.hpp"

namespace sail {

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

} // namespace sail
