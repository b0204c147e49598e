// The binding's process-wide state: actor systems, local runtimes, clusters
// and resolvers, created on first use and shared by every Python completer
// that targets the same place; torn down in order by shutdown() (atexit).
//
//   actor system (one per system_settings: TLS files, heartbeats)
//     +-- bridge (actors/bridge.hpp): every Python call goes through it
//     +-- runtimes, one per (base URL, API key, runtime options)
//     +-- clusters, one per (nodes, completer configuration, options)
//     +-- resolver hosts, one per (Tinker base URL, API key)
//
// Nothing here touches Python: callers release the GIL around every call,
// since starting and stopping block.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/actors/bridge.hpp"
#include "sail_tinker/actors/cluster.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/system_config.hpp"

namespace sail::py {

/// What CAF reads when an actor system starts; systems with different
/// settings are different systems.
struct system_settings {
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_cafile;
  std::string tls_capath;
  std::string tls_passphrase;
  std::optional<caf::timespan> heartbeat_interval;
  std::optional<caf::timespan> connection_timeout;

  std::string key() const;
};

struct system_entry;
struct cluster_box;

/// What a Python completer holds: the handles it sends to. Emptied (closed)
/// by close() or shutdown(), so no Python object keeps an actor alive.
class completer_slot {
public:
  struct target {
    bridge_actor bridge;
    completer_actor completer;
  };

  /// The handles, or nullopt once closed.
  std::optional<target> get() const;

  /// What a step sampler wraps: the actor system and the completer before
  /// any durable front (make_durable); nullopt once closed.
  struct plain_target {
    caf::actor_system* sys = nullptr;
    completer_actor completer;
    /// The runtime's [wire] (what a durable front encodes bodies with).
    wire_options wire;
  };
  std::optional<plain_target> plain() const;

  bool is_cluster() const noexcept {
    return !cluster_key_.empty();
  }

  /// When its Python object goes away: a local completer exits (nobody can
  /// await its samples any more); a cluster stays until shutdown(), since
  /// stopping one blocks. Never blocks; takes only the slot's lock.
  void abandon();

private:
  friend class host;
  mutable std::mutex mtx_;
  bool closed_ = false;
  bridge_actor bridge_;
  completer_actor completer_;
  /// Durable (make_durable): the wrapped completer; completer_ is the
  /// durable front.
  completer_actor inner_;
  caf::actor_system* sys_ = nullptr;
  /// The runtime's [wire] (local mode): what a durable front encodes with.
  wire_options wire_;
  system_entry* owner_ = nullptr;
  std::string cluster_key_;  ///< non-empty in cluster mode
  std::shared_ptr<cluster_box> cluster_;
};

/// What the Python resolve call holds.
class resolver_slot {
public:
  struct target {
    bridge_actor bridge;
    resolver_actor resolver;
    caf::timespan timeout;
  };

  std::optional<target> get() const;

private:
  friend class host;
  mutable std::mutex mtx_;
  bool closed_ = false;
  bridge_actor bridge_;
  resolver_actor resolver_;
  caf::timespan timeout_{0};
};

class host {
public:
  /// The process's host (never destroyed: shutdown() ends it).
  static host& instance();

  /// A completer on the local runtime for `runtime_key` (started with `opts`
  /// if new). `cfg` is validated by the runtime (typed error).
  caf::expected<std::shared_ptr<completer_slot>>
  local_completer(const system_settings& ss, const std::string& runtime_key,
                  runtime_options opts, completer_config cfg);

  /// A completer backed by the cluster for (nodes, configuration, options);
  /// clusters are shared and reference counted by their completers.
  caf::expected<std::shared_ptr<completer_slot>> cluster_completer(const system_settings& ss,
                                                                   cluster_options opts);

  /// The resolver for (base URL, API key), started if new.
  caf::expected<std::shared_ptr<resolver_slot>> resolver(resolver_options opts,
                                                         http_client_options http);

  /// Makes a completer durable: its samples go through a durable front
  /// (actors/durable_completer.hpp) on `run` at `opts.step`. `cfg` is the
  /// completer's configuration.
  caf::error make_durable(completer_slot& slot, completer_config cfg, durable_options opts);

  /// Ends a completer: a local one exits (its open samples fail with
  /// `cancelled`); a cluster loses a user and shuts down with its last one.
  void close(completer_slot& slot);

  /// Counters of the completer (local) or of the cluster's nodes.
  caf::expected<completer_stats> stats(completer_slot& slot);

  /// The cluster's view of its nodes (empty for a local completer).
  std::vector<node_status> status(completer_slot& slot);

  /// Waits until `n` nodes are ready (cluster mode); false on timeout.
  bool wait_ready(completer_slot& slot, size_t n, caf::timespan timeout);

  /// Stops everything in order: clusters, runtimes (completers answer open
  /// samples `cancelled`), resolvers, the bridges, then the actor systems.
  /// With `final`, later calls fail with not_configured (interpreter exit).
  void shutdown(bool final);

private:
  host() = default;

  caf::expected<system_entry*> system_for(const system_settings& ss);

  std::mutex mtx_;
  std::vector<std::unique_ptr<system_entry>> systems_;
  bool final_ = false;
};

} // namespace sail::py
