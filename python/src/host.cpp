#include "host.hpp"

#include <algorithm>
#include <condition_variable>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/logger.hpp>
#include <caf/send.hpp>

#include "sail_tinker/actors/bounded_stop.hpp"
#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/actors/resolver.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_client.hpp"

namespace sail::py {

namespace {

/// CAF 0.17 keeps a reference to the system's logger in a thread-local of
/// every thread that spawns (a scoped_actor too), and ~actor_system waits
/// until the logger is gone: a Python thread that once started a runtime
/// would hang another thread's shutdown forever. Every host operation drops
/// its thread's reference when it ends.
struct release_thread_logger {
  release_thread_logger() = default;
  release_thread_logger(const release_thread_logger&) = delete;
  release_thread_logger& operator=(const release_thread_logger&) = delete;
  ~release_thread_logger() {
    caf::logger::set_current_actor_system(nullptr);
  }
};

/// Bound of each shutdown step of an actor the binding owns (the bridge and
/// the resolver answer open calls from memory on exit).
constexpr caf::timespan stop_grace = std::chrono::seconds(10);

void append(std::string& out, const std::string& field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

/// A Tinker resolver with its own HTTP client and io thread, like
/// `sail-tinker resolve`: resolving needs no Sail key, so it does not live in
/// a runtime.
struct resolver_host {
  boost::asio::io_context io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  std::thread thread;
  std::optional<http_client> client;
  resolver_actor resolver;
  std::shared_ptr<resolver_slot> slot;

  void stop(caf::actor_system& sys) {
    stop_bounded(sys, resolver, stop_grace);
    resolver = nullptr;
    if (client)
      client->close_idle();
    work.reset();
    io.stop();
    if (thread.joinable())
      thread.join();
    client.reset();
  }
};

} // namespace

/// A cluster and the threads blocked in wait_ready() on it: it is destroyed
/// only after they left (its shutdown wakes them: every node is `stopped`).
struct cluster_box {
  std::unique_ptr<sail::cluster> cl;
  size_t users = 0;  ///< completers (guarded by the host's lock)
  std::mutex mtx;
  std::condition_variable cv;
  size_t waiting = 0;

  /// Shuts the cluster down (bounded), waits for the waiters to leave and
  /// destroys it, so that nothing of it outlives its actor system.
  void stop() {
    cl->shutdown();
    {
      std::unique_lock<std::mutex> lock{mtx};
      cv.wait(lock, [this] { return waiting == 0; });
    }
    cl.reset();
  }
};

/// One actor system and everything started in it.
struct system_entry {
  std::string key;
  std::unique_ptr<node_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  bridge_actor bridge;
  std::map<std::string, std::unique_ptr<runtime>> runtimes;
  std::map<std::string, std::shared_ptr<cluster_box>> clusters;
  std::map<std::string, std::unique_ptr<resolver_host>> resolvers;
  std::vector<std::weak_ptr<completer_slot>> slots;
};

// -- settings and slots -------------------------------------------------------------------

std::string system_settings::key() const {
  std::string out;
  for (auto* s : {&tls_certificate, &tls_key, &tls_cafile, &tls_capath, &tls_passphrase})
    append(out, *s);
  auto ns = [](const std::optional<caf::timespan>& t) {
    return t ? std::to_string(t->count()) : std::string{"-"};
  };
  append(out, ns(heartbeat_interval));
  append(out, ns(connection_timeout));
  return out;
}

std::optional<completer_slot::target> completer_slot::get() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (closed_)
    return std::nullopt;
  return target{bridge_, completer_};
}

std::optional<completer_slot::plain_target> completer_slot::plain() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (closed_ || sys_ == nullptr)
    return std::nullopt;
  return plain_target{sys_, inner_ ? inner_ : completer_, wire_};
}

void completer_slot::abandon() {
  completer_actor completer;
  completer_actor inner;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_ || is_cluster())
      return;
    closed_ = true;
    completer = std::move(completer_);
    completer_ = nullptr;
    inner = std::move(inner_);
    inner_ = nullptr;
    bridge_ = nullptr;
  }
  if (completer)
    caf::anon_send_exit(completer, caf::exit_reason::user_shutdown);
  if (inner)
    caf::anon_send_exit(inner, caf::exit_reason::user_shutdown);
}

std::optional<resolver_slot::target> resolver_slot::get() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (closed_)
    return std::nullopt;
  return target{bridge_, resolver_, timeout_};
}

// -- host ---------------------------------------------------------------------------------

host& host::instance() {
  // Leaked: shutdown() (atexit) stops everything; a static destructor would
  // run after the interpreter is gone.
  static auto* h = new host;
  return *h;
}

caf::expected<system_entry*> host::system_for(const system_settings& ss) {
  if (final_)
    return make_error(errc::not_configured, "sail_tinker has shut down (interpreter exit)");
  auto key = ss.key();
  for (auto& e : systems_)
    if (e->key == key)
      return e.get();
  auto e = std::make_unique<system_entry>();
  e->key = key;
  e->cfg = std::make_unique<node_config>();
  auto& cfg = *e->cfg;
  // CAF's OpenSSL module reads the config members; tls_configured() reads
  // the options (see tests/support/cluster_fixture.cpp).
  auto tls = [&cfg](std::string& member, const char* name, const std::string& value) {
    if (!value.empty()) {
      member = value;
      cfg.set(name, value);
    }
  };
  tls(cfg.openssl_certificate, "openssl.certificate", ss.tls_certificate);
  tls(cfg.openssl_key, "openssl.key", ss.tls_key);
  tls(cfg.openssl_cafile, "openssl.cafile", ss.tls_cafile);
  tls(cfg.openssl_capath, "openssl.capath", ss.tls_capath);
  tls(cfg.openssl_passphrase, "openssl.passphrase", ss.tls_passphrase);
  if (ss.heartbeat_interval)
    cfg.set("middleman.heartbeat-interval", *ss.heartbeat_interval);
  if (ss.connection_timeout)
    cfg.set("middleman.connection-timeout", *ss.connection_timeout);
  try {
    e->sys = std::make_unique<caf::actor_system>(cfg);
  } catch (std::exception& ex) {
    // The OpenSSL module throws for unusable certificate files.
    return invalid_argument("tls", std::string{"cannot start the actor system: "} + ex.what());
  }
  e->bridge = spawn_bridge(*e->sys, "sail_tinker");
  systems_.push_back(std::move(e));
  return systems_.back().get();
}

caf::expected<std::shared_ptr<completer_slot>>
host::local_completer(const system_settings& ss, const std::string& runtime_key,
                      runtime_options opts, completer_config cfg) {
  release_thread_logger release;
  std::lock_guard<std::mutex> guard{mtx_};
  auto e = system_for(ss);
  if (!e)
    return std::move(e.error());
  auto& rts = (*e)->runtimes;
  auto i = rts.find(runtime_key);
  if (i == rts.end()) {
    auto rt = runtime::start(*(*e)->sys, std::move(opts));
    if (!rt)
      return std::move(rt.error());
    i = rts.emplace(runtime_key, std::move(*rt)).first;
  }
  auto c = i->second->make_completer(std::move(cfg));
  if (!c)
    return std::move(c.error());
  auto slot = std::make_shared<completer_slot>();
  slot->bridge_ = (*e)->bridge;
  slot->completer_ = std::move(*c);
  slot->sys_ = (*e)->sys.get();
  slot->wire_ = i->second->options().wire;
  slot->owner_ = *e;
  (*e)->slots.push_back(slot);
  return slot;
}

caf::expected<std::shared_ptr<completer_slot>>
host::cluster_completer(const system_settings& ss, cluster_options opts) {
  release_thread_logger release;
  std::lock_guard<std::mutex> guard{mtx_};
  auto e = system_for(ss);
  if (!e)
    return std::move(e.error());
  auto& sys = *(*e)->sys;
  // Clusters with equal nodes, configuration and options are one cluster.
  std::string key;
  for (auto& n : opts.nodes)
    append(key, n.to_string());
  {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    if (auto err = sink(opts.config, opts.connect_timeout, opts.obtain_timeout,
                        opts.request_timeout, opts.retry_min, opts.retry_max,
                        opts.queue_timeout, opts.max_routes, opts.stats_timeout))
      return invalid_argument("temperature", "configuration is not serializable "
                                             "(non-finite temperature or top_p)");
    append(key, std::string{buf.begin(), buf.end()});
    append(key, std::to_string(static_cast<int>(opts.security)));
  }
  auto& cls = (*e)->clusters;
  auto i = cls.find(key);
  if (i == cls.end()) {
    auto cl = sail::cluster::start(sys, std::move(opts));
    if (!cl)
      return std::move(cl.error());
    auto box = std::make_shared<cluster_box>();
    box->cl = std::move(*cl);
    i = cls.emplace(key, std::move(box)).first;
  }
  ++i->second->users;
  auto slot = std::make_shared<completer_slot>();
  slot->bridge_ = (*e)->bridge;
  slot->completer_ = i->second->cl->handle();
  slot->sys_ = &sys;
  slot->owner_ = *e;
  slot->cluster_key_ = key;
  slot->cluster_ = i->second;
  (*e)->slots.push_back(slot);
  return slot;
}

caf::expected<std::shared_ptr<resolver_slot>> host::resolver(resolver_options opts,
                                                             http_client_options http) {
  release_thread_logger release;
  std::lock_guard<std::mutex> guard{mtx_};
  auto e = system_for(system_settings{});
  if (!e)
    return std::move(e.error());
  std::string key;
  append(key, opts.base_url);
  append(key, opts.api_key);
  auto& rs = (*e)->resolvers;
  if (auto i = rs.find(key); i != rs.end())
    return i->second->slot;
  auto rh = std::make_unique<resolver_host>();
  auto client = http_client::make(rh->io, std::move(http));
  if (!client)
    return std::move(client.error());
  rh->client.emplace(std::move(*client));
  rh->work.emplace(rh->io.get_executor());
  rh->thread = std::thread{[io = &rh->io] { io->run(); }};
  // Bounded like `sail-tinker resolve`: every REST call has its own timeout
  // and a retry cap; this is the backstop above that.
  auto bound = opts.call_timeout * 2 * (opts.retry.max_attempts + 1)
               + opts.retry.still_building_delay * opts.retry.max_attempts;
  auto res = spawn_resolver(*(*e)->sys, *rh->client, std::move(opts));
  if (!res) {
    rh->stop(*(*e)->sys);
    return std::move(res.error());
  }
  rh->resolver = std::move(*res);
  rh->slot = std::make_shared<resolver_slot>();
  rh->slot->bridge_ = (*e)->bridge;
  rh->slot->resolver_ = rh->resolver;
  rh->slot->timeout_ = bound;
  auto slot = rh->slot;
  rs.emplace(key, std::move(rh));
  return slot;
}

caf::error host::make_durable(completer_slot& slot, completer_config cfg,
                              durable_options opts) {
  std::lock_guard<std::mutex> guard{mtx_};
  std::lock_guard<std::mutex> slot_guard{slot.mtx_};
  if (slot.closed_ || slot.sys_ == nullptr || !slot.completer_)
    return make_error(errc::cancelled, "the completer is closed");
  if (slot.inner_)
    return invalid_argument("run", "the completer is durable already");
  if (!opts.wire)
    opts.wire = slot.wire_;
  auto front = spawn_durable_completer(*slot.sys_, slot.completer_, std::move(cfg),
                                       std::move(opts));
  if (!front)
    return std::move(front.error());
  slot.inner_ = std::move(slot.completer_);
  slot.completer_ = std::move(*front);
  return caf::none;
}

void host::close(completer_slot& slot) {
  release_thread_logger release;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    completer_actor completer;
    completer_actor inner;
    std::shared_ptr<cluster_box> box;
    {
      std::lock_guard<std::mutex> slot_guard{slot.mtx_};
      if (slot.closed_)
        return;
      slot.closed_ = true;
      completer = std::move(slot.completer_);
      slot.completer_ = nullptr;
      inner = std::move(slot.inner_);
      slot.inner_ = nullptr;
      slot.bridge_ = nullptr;
      box = std::move(slot.cluster_);
      slot.cluster_ = nullptr;
    }
    if (!slot.is_cluster()) {
      // The runtime keeps the (dead) handle until it shuts down.
      if (completer)
        caf::anon_send_exit(completer, caf::exit_reason::user_shutdown);
      if (inner)
        caf::anon_send_exit(inner, caf::exit_reason::user_shutdown);
      return;
    }
    // A durable front on the (shared) cluster goes; the cluster stays.
    if (inner && completer)
      caf::anon_send_exit(completer, caf::exit_reason::user_shutdown);
    if (box && --box->users == 0) {
      slot.owner_->clusters.erase(slot.cluster_key_);
      // Bounded; open samples fail with `cancelled`. Under the host's lock,
      // so that shutdown() cannot destroy the actor system meanwhile.
      box->stop();
    }
  }
}

caf::expected<completer_stats> host::stats(completer_slot& slot) {
  release_thread_logger release;
  // Under the host's lock: shutdown() cannot take the system away meanwhile
  // (the requests are bounded).
  std::lock_guard<std::mutex> guard{mtx_};
  caf::actor_system* sys = nullptr;
  completer_actor completer;
  std::shared_ptr<cluster_box> box;
  {
    // Never block holding the slot's lock: the event loop takes it per call.
    std::lock_guard<std::mutex> slot_guard{slot.mtx_};
    if (slot.closed_)
      return make_error(errc::cancelled, "the completer is closed");
    box = slot.cluster_;
    sys = slot.sys_;
    completer = slot.completer_;
  }
  if (box)
    return box->cl->stats();
  return blocking_request<completer_stats>(*sys, completer, std::chrono::seconds(10),
                                           atom::stats_v);
}

std::vector<node_status> host::status(completer_slot& slot) {
  std::lock_guard<std::mutex> guard{mtx_};
  std::lock_guard<std::mutex> slot_guard{slot.mtx_};
  if (slot.closed_ || !slot.cluster_)
    return {};
  return slot.cluster_->cl->status();  // the monitor's snapshot: never blocks
}

bool host::wait_ready(completer_slot& slot, size_t n, caf::timespan timeout) {
  std::shared_ptr<cluster_box> box;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    std::lock_guard<std::mutex> slot_guard{slot.mtx_};
    if (slot.closed_ || !slot.cluster_)
      return false;
    box = slot.cluster_;
    std::lock_guard<std::mutex> box_guard{box->mtx};
    ++box->waiting;
  }
  auto ready = [n](const std::vector<node_status>& xs) {
    return static_cast<size_t>(std::count_if(xs.begin(), xs.end(), [](auto& x) {
             return x.state == node_state::ready;
           }))
           >= n;
  };
  // Also wakes when the cluster stops (close() or shutdown() on another
  // thread), which then waits for this call to leave before destroying it.
  box->cl->wait_for(
    [&](const std::vector<node_status>& xs) {
      return ready(xs) || std::any_of(xs.begin(), xs.end(), [](auto& x) {
               return x.state == node_state::stopped;
             });
    },
    timeout);
  bool result = ready(box->cl->status());
  {
    std::lock_guard<std::mutex> box_guard{box->mtx};
    --box->waiting;
  }
  box->cv.notify_all();
  return result;
}

void host::shutdown(bool final) {
  release_thread_logger release;
  std::vector<std::unique_ptr<system_entry>> systems;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (final)
      final_ = true;
    systems.swap(systems_);
    // No new calls from here on; the handles go once the actors are down.
    for (auto& e : systems)
      for (auto& weak : e->slots)
        if (auto slot = weak.lock()) {
          std::lock_guard<std::mutex> slot_guard{slot->mtx_};
          slot->closed_ = true;
        }
  }
  for (auto& e : systems) {
    auto& sys = *e->sys;
    for (auto& [key, box] : e->clusters)
      box->stop();
    for (auto& [key, rt] : e->runtimes)
      rt->shutdown();
    for (auto& [key, rh] : e->resolvers) {
      {
        std::lock_guard<std::mutex> slot_guard{rh->slot->mtx_};
        rh->slot->closed_ = true;
        rh->slot->bridge_ = nullptr;
        rh->slot->resolver_ = nullptr;
      }
      rh->stop(sys);
    }
    stop_bounded(sys, e->bridge, stop_grace);
    e->bridge = nullptr;
    // No Python object may keep a handle into a system that is going away.
    for (auto& weak : e->slots) {
      if (auto slot = weak.lock()) {
        std::lock_guard<std::mutex> slot_guard{slot->mtx_};
        slot->completer_ = nullptr;
        slot->inner_ = nullptr;
        slot->bridge_ = nullptr;
        slot->cluster_ = nullptr;
        slot->sys_ = nullptr;
      }
    }
    e->clusters.clear();
    e->runtimes.clear();
    e->resolvers.clear();
    e->sys.reset();
    e->cfg.reset();
  }
}

} // namespace sail::py
