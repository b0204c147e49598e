#include "sail_tinker/actors/cluster.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <deque>
#include <random>
#include <unordered_map>

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"
#include "sail_tinker/messages/validation.hpp"

// Local-only atoms of the cluster actors (atoms carry no type ID in 0.17.6).
CAF_ADD_ATOM(sail, sail::atom, node_up, "nodeUp")
CAF_ADD_ATOM(sail, sail::atom, node_lost, "nodeLost")
CAF_ADD_ATOM(sail, sail::atom, reconnect, "reconnect")
CAF_ADD_ATOM(sail, sail::atom, expire, "expire")

namespace sail {

// -- addresses ------------------------------------------------------------------------

std::string node_address::to_string() const {
  if (host.find(':') != std::string::npos)
    return '[' + host + "]:" + std::to_string(port);
  return host + ':' + std::to_string(port);
}

caf::expected<node_address> parse_node_address(std::string_view text,
                                                std::string field) {
  auto bad = [&](const std::string& why) {
    return invalid_argument(field, "'" + std::string{text} + "' is not host:port: " + why);
  };
  node_address result;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("expected [address]:port");
    result.host = std::string{text.substr(1, close - 1)};
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return bad("missing port");
    result.host = std::string{text.substr(0, colon)};
    if (result.host.find(':') != std::string::npos)
      return bad("write IPv6 addresses as [address]:port");
    port_text = text.substr(colon + 1);
  }
  if (result.host.empty())
    return bad("empty host");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || value == 0
      || value > 65535)
    return bad("port must be 1..65535");
  result.port = static_cast<uint16_t>(value);
  return result;
}

caf::expected<std::vector<node_address>> parse_node_list(std::string_view text,
                                                         std::string field) {
  std::vector<node_address> result;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (!item.empty()) {
      auto addr = parse_node_address(item, field);
      if (!addr)
        return std::move(addr.error());
      if (std::find(result.begin(), result.end(), *addr) != result.end())
        return invalid_argument(field, "node " + addr->to_string() + " is listed twice");
      result.push_back(std::move(*addr));
    }
    if (comma == std::string_view::npos)
      break;
    text.remove_prefix(comma + 1);
  }
  if (result.empty())
    return invalid_argument(field, "no service node given");
  return result;
}

// -- options and status -------------------------------------------------------------

caf::error validate(const cluster_options& opts) {
  if (opts.nodes.empty())
    return invalid_argument("nodes", "no service node given");
  for (size_t i = 0; i < opts.nodes.size(); ++i) {
    auto& n = opts.nodes[i];
    if (n.host.empty() || n.port == 0)
      return invalid_argument("nodes", "node " + std::to_string(i) + " needs a host and a port");
    for (size_t j = 0; j < i; ++j)
      if (opts.nodes[j] == n)
        return invalid_argument("nodes", "node " + n.to_string() + " is listed twice");
  }
  // A non-finite double must never reach a link (CAF #1107: a failed save
  // poisons the connection); the node validates the rest with its table.
  if (!std::isfinite(opts.config.temperature))
    return invalid_argument("temperature", "temperature must be finite");
  if (!std::isfinite(opts.config.top_p))
    return invalid_argument("top_p", "top_p must be finite");
  using caf::timespan;
  auto positive = [](timespan t) { return t.count() > 0; };
  if (!positive(opts.connect_timeout))
    return invalid_argument("connect_timeout", "must be positive");
  if (!positive(opts.obtain_timeout))
    return invalid_argument("obtain_timeout", "must be positive");
  if (!positive(opts.request_timeout))
    return invalid_argument("request_timeout", "must be positive");
  if (!positive(opts.queue_timeout))
    return invalid_argument("queue_timeout", "must be positive");
  if (!positive(opts.stats_timeout))
    return invalid_argument("stats_timeout", "must be positive");
  if (!positive(opts.retry_min) || opts.retry_max < opts.retry_min)
    return invalid_argument("retry_min", "need 0 < retry_min <= retry_max");
  if (opts.max_attempts == 0)
    return invalid_argument("max_attempts", "must be at least 1");
  return caf::none;
}

const char* to_string(node_state x) noexcept {
  switch (x) {
    case node_state::connecting:
      return "connecting";
    case node_state::ready:
      return "ready";
    case node_state::lost:
      return "lost";
    case node_state::stopped:
      return "stopped";
  }
  return "unknown";
}

cluster_monitor::cluster_monitor(const std::vector<node_address>& nodes) {
  for (auto& n : nodes) {
    node_status s;
    s.address = n;
    nodes_.push_back(std::move(s));
  }
}

std::vector<node_status> cluster_monitor::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return nodes_;
}

void cluster_monitor::update(size_t idx, const std::function<void(node_status&)>& fn) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (idx >= nodes_.size())
      return;
    fn(nodes_[idx]);
  }
  cv_.notify_all();
}

bool cluster_monitor::wait(
  const std::function<bool(const std::vector<node_status>&)>& pred,
  caf::timespan timeout) const {
  std::unique_lock<std::mutex> guard{mtx_};
  return cv_.wait_for(guard, timeout, [&] { return pred(nodes_); });
}

namespace {

// -- interfaces of the cluster's actors -------------------------------------------------

/// A node proxy: the public interface plus its reconnect timer.
using proxy_actor = completer_actor::extend<caf::reacts_to<atom::reconnect, uint64_t>>;

/// The balancer: the public interface plus the proxies' reports and the
/// queue timer.
using balancer_actor = completer_actor::extend<
  caf::reacts_to<atom::node_up, uint32_t>,
  caf::reacts_to<atom::node_lost, uint32_t, caf::error>,
  caf::reacts_to<atom::expire, uint64_t, uint64_t>>;

/// Margin of a balancer -> proxy request over the proxy's own timeout, so the
/// proxy always answers first (typed).
constexpr auto proxy_margin = std::chrono::seconds(30);

// -- node proxy ---------------------------------------------------------------------------

struct proxy_state {
  static inline const char* name = "sail.node_proxy";
  uint32_t index = 0;
  std::shared_ptr<const cluster_options> opts;
  std::shared_ptr<cluster_monitor> mon;
  balancer_actor balancer;
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
};

using proxy_ptr = proxy_actor::stateful_pointer<proxy_state>;

void connect(proxy_ptr self);

void schedule_reconnect(proxy_ptr self) {
  auto& st = self->state;
  auto gen = ++st.generation;
  auto delay = st.backoff;
  st.backoff = std::min(st.backoff * 2, st.opts->retry_max);
  self->delayed_send(self, delay, atom::reconnect_v, gen);
}

void fail_all(proxy_ptr self, const caf::error& err) {
  // Collect first: a callback must not run while the map is iterated.
  auto open = std::move(self->state.inflight);
  self->state.inflight.clear();
  for (auto& [id, fail] : open)
    fail(err);
}

void drop_monitors(proxy_ptr self) {
  auto& st = self->state;
  if (st.front)
    self->demonitor(st.front);
  if (st.remote)
    self->demonitor(st.remote.address());
  st.front = nullptr;
  st.remote = nullptr;
  st.ready = false;
}

/// A connect or obtain attempt failed: report, retry later.
void attempt_failed(proxy_ptr self, uint64_t gen, caf::error err) {
  auto& st = self->state;
  if (gen != st.generation || st.ready)
    return;
  drop_monitors(self);
  auto text = render(err);
  // The node's state in the monitor is the balancer's to set (node_lost),
  // so that `ready` there always means "the balancer routes to it".
  st.mon->update(st.index, [&](node_status& s) {
    ++s.failed_attempts;
    s.last_error = text;
  });
  self->send(st.balancer, atom::node_lost_v, st.index, std::move(err));
  schedule_reconnect(self);
}

/// The node went away: fail everything in flight at once, then reconnect.
void node_lost(proxy_ptr self, const caf::error& why) {
  auto& st = self->state;
  drop_monitors(self);
  auto err = make_error(errc::node_down,
                        "service node " + st.addr().to_string() + " lost: " + render(why));
  auto text = render(err);
  st.mon->update(st.index, [&](node_status& s) {
    ++s.losses;
    s.last_error = text;
  });
  // The balancer hears about the loss before the failures (same sender, so
  // FIFO): it re-routes them to other nodes only.
  self->send(st.balancer, atom::node_lost_v, st.index, err);
  fail_all(self, err);
  st.backoff = st.opts->retry_min;
  schedule_reconnect(self);
}

void obtained(proxy_ptr self, uint64_t gen, completer_actor c) {
  auto& st = self->state;
  if (gen != st.generation || st.ready)
    return;
  if (!c)
    return attempt_failed(self, gen,
                          make_error(errc::transport_error, "obtain returned no completer"));
  self->monitor(c);
  st.remote = std::move(c);
  st.ready = true;
  st.backoff = st.opts->retry_min;
  st.mon->update(st.index, [](node_status& s) { ++s.connects; });
  // The balancer marks the node ready in the monitor once it routes to it:
  // cluster::wait_ready() returning means samples can go there.
  self->send(st.balancer, atom::node_up_v, st.index);
}

void connect(proxy_ptr self) {
  auto& st = self->state;
  auto gen = ++st.generation;
  auto& sys = self->system();
  auto mm = st.tls ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
  self->request(mm, st.opts->connect_timeout, caf::connect_atom_v, st.addr().host,
                st.addr().port)
    .then(
      [self, gen](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>& ifs) {
        auto& st = self->state;
        if (gen != st.generation || st.ready)
          return;
        if (!ptr)
          return attempt_failed(self, gen,
                                make_error(errc::transport_error,
                                           "no actor is published at "
                                             + st.addr().to_string()));
        if (!self->system().assignable<completer_service_actor>(ifs)) {
          std::string got;
          for (auto& x : ifs)
            got += (got.empty() ? "" : ", ") + x;
          return attempt_failed(self, gen,
                                caf::make_error(caf::sec::unexpected_actor_messaging_interface,
                                                std::string{"a sail service"}, got));
        }
        auto front = caf::actor_cast<completer_service_actor>(std::move(ptr));
        self->monitor(front);
        st.front = front.address();
        self->request(front, st.opts->obtain_timeout, atom::obtain_v, st.opts->config)
          .then([self, gen](completer_actor& c) { obtained(self, gen, std::move(c)); },
                [self, gen](caf::error& err) { attempt_failed(self, gen, std::move(err)); });
      },
      [self, gen](caf::error& err) { attempt_failed(self, gen, std::move(err)); });
}

/// Errors of the link itself become node_down (re-routable); a CAF timeout
/// becomes a typed timeout; the node's own (sail) errors pass unchanged.
caf::error link_error(const proxy_state& st, caf::error err) {
  if (code_of(err))
    return err;
  if (err == caf::sec::request_timeout)
    return make_error(errc::timeout, "service node " + st.addr().to_string()
                                       + " did not answer in time");
  return make_error(errc::node_down,
                    "service node " + st.addr().to_string() + ": " + render(err));
}

template <class T, class... Ts>
caf::result<T> forward(proxy_ptr self, caf::timespan timeout, Ts... xs) {
  auto& st = self->state;
  if (!st.ready)
    return make_error(errc::node_down,
                      "service node " + st.addr().to_string() + " is not connected");
  auto rp = self->template make_response_promise<T>();
  auto id = ++st.next_id;
  st.inflight.emplace(id, [rp](caf::error err) mutable { rp.deliver(std::move(err)); });
  self->request(st.remote, timeout, std::move(xs)...)
    .then(
      [self, id, rp](T& res) mutable {
        if (self->state.inflight.erase(id) > 0)
          rp.deliver(std::move(res));
      },
      [self, id, rp](caf::error& err) mutable {
        if (self->state.inflight.erase(id) > 0)
          rp.deliver(link_error(self->state, std::move(err)));
      });
  return rp;
}

proxy_actor::behavior_type proxy_behavior(proxy_ptr self, uint32_t index,
                                          std::shared_ptr<const cluster_options> opts,
                                          std::shared_ptr<cluster_monitor> mon,
                                          balancer_actor balancer, bool tls) {
  auto& st = self->state;
  st.index = index;
  st.opts = std::move(opts);
  st.mon = std::move(mon);
  st.balancer = std::move(balancer);
  st.tls = tls;
  st.backoff = st.opts->retry_min;
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    bool from_front = st.front && dm.source == st.front;
    bool from_remote = st.remote && dm.source == st.remote.address();
    if (!from_front && !from_remote)
      return;
    if (st.ready)
      node_lost(self, dm.reason);
    else
      attempt_failed(self, st.generation, dm.reason);
  });
  self->set_exit_handler([self](caf::exit_msg& em) {
    fail_all(self, make_error(errc::cancelled, "cluster shutting down"));
    self->state.mon->update(self->state.index,
                            [](node_status& s) { s.state = node_state::stopped; });
    self->quit(em.reason);
  });
  connect(self);
  return {
    [self](atom::sample, sample_request& req) -> caf::result<tokens_with_logprobs> {
      return forward<tokens_with_logprobs>(self, self->state.opts->request_timeout,
                                           atom::sample_v, std::move(req));
    },
    [self](atom::sample_group, sample_request& req, uint32_t n) -> caf::result<group_result> {
      return forward<group_result>(self, self->state.opts->request_timeout,
                                   atom::sample_group_v, std::move(req), n);
    },
    [self](atom::cancel, std::string& what) {
      if (self->state.ready)
        self->send(self->state.remote, atom::cancel_v, std::move(what));
    },
    [self](atom::stats) -> caf::result<completer_stats> {
      return forward<completer_stats>(self, self->state.opts->stats_timeout, atom::stats_v);
    },
    [self](atom::reconnect, uint64_t gen) {
      auto& st = self->state;
      if (gen == st.generation && !st.ready)
        connect(self);
    },
  };
}

// -- balancer -------------------------------------------------------------------------------

struct job {
  bool group = false;
  sample_request req;
  uint32_t n = 1;
  caf::typed_response_promise<tokens_with_logprobs> rp_one;
  caf::typed_response_promise<group_result> rp_group;
  /// Dispatches so far; also the id of the current attempt.
  uint32_t attempts = 0;
  /// Node holding the job now, -1 if none.
  int32_t node = -1;
  bool cancelled = false;
  bool queued = false;
  uint64_t queue_gen = 0;
  caf::error last_error;

  uint64_t weight() const {
    return group ? n : 1;
  }
};

struct node_entry {
  proxy_actor proxy;
  bool ready = false;
  bool alive = true;
  uint64_t in_flight = 0;
  caf::error last_error;
};

struct balancer_state {
  static inline const char* name = "sail.cluster";
  std::shared_ptr<const cluster_options> opts;
  std::shared_ptr<cluster_monitor> mon;
  std::vector<node_entry> nodes;
  std::unordered_map<uint64_t, job> jobs;
  std::deque<uint64_t> queue;
  uint64_t next_job = 0;
  uint64_t next_queue_gen = 0;
  bool stopping = false;
  std::mt19937_64 rng;
  boost::uuids::random_generator uuids;

  std::string new_key() {
    return boost::uuids::to_string(uuids());
  }
};

using balancer_ptr = balancer_actor::stateful_pointer<balancer_state>;

void dispatch(balancer_ptr self, uint64_t id);

/// Least in flight among ready nodes, random tie-break; -1 if none is ready.
int32_t pick(balancer_state& st) {
  std::vector<int32_t> best;
  uint64_t least = 0;
  for (size_t i = 0; i < st.nodes.size(); ++i) {
    auto& n = st.nodes[i];
    if (!n.ready)
      continue;
    if (best.empty() || n.in_flight < least) {
      best.clear();
      least = n.in_flight;
    }
    if (n.in_flight == least)
      best.push_back(static_cast<int32_t>(i));
  }
  if (best.empty())
    return -1;
  if (best.size() == 1)
    return best.front();
  std::uniform_int_distribution<size_t> dist{0, best.size() - 1};
  return best[dist(st.rng)];
}

/// Takes the job off its node (in-flight accounting).
void release(balancer_state& st, job& j) {
  if (j.node < 0)
    return;
  auto& n = st.nodes[static_cast<size_t>(j.node)];
  n.in_flight -= std::min(n.in_flight, j.weight());
  auto in_flight = n.in_flight;
  st.mon->update(static_cast<size_t>(j.node),
                 [in_flight](node_status& s) { s.in_flight = in_flight; });
  j.node = -1;
}

void finish_error(balancer_ptr self, uint64_t id, caf::error err) {
  auto& st = self->state;
  auto i = st.jobs.find(id);
  if (i == st.jobs.end())
    return;
  auto& j = i->second;
  release(st, j);
  if (j.queued) {
    st.queue.erase(std::remove(st.queue.begin(), st.queue.end(), id), st.queue.end());
    j.queued = false;
  }
  if (j.group)
    j.rp_group.deliver(std::move(err));
  else
    j.rp_one.deliver(std::move(err));
  st.jobs.erase(i);
}

bool config_rejected(const caf::error& err) {
  auto code = code_of(err);
  return code && (*code == errc::invalid_argument || *code == errc::not_configured);
}

/// The error for work that cannot be placed: the nodes' common rejection of
/// the configuration if every node rejected it, else node_down.
caf::error unavailable(const balancer_state& st, const std::string& why) {
  bool all_rejected = !st.nodes.empty();
  for (auto& n : st.nodes)
    all_rejected = all_rejected && !n.ready && config_rejected(n.last_error);
  if (all_rejected)
    return st.nodes.front().last_error;
  std::string last;
  for (auto& n : st.nodes)
    if (n.last_error) {
      last = render(n.last_error);
      break;
    }
  return make_error(errc::node_down,
                    why + (last.empty() ? std::string{} : " (last error: " + last + ")"));
}

bool all_rejected(const balancer_state& st) {
  for (auto& n : st.nodes)
    if (n.ready || !config_rejected(n.last_error))
      return false;
  return !st.nodes.empty();
}

void fail_queue(balancer_ptr self, const caf::error& err) {
  auto ids = std::vector<uint64_t>(self->state.queue.begin(), self->state.queue.end());
  for (auto id : ids)
    finish_error(self, id, err);
}

void enqueue(balancer_ptr self, uint64_t id) {
  auto& st = self->state;
  auto& j = st.jobs[id];
  if (all_rejected(st))
    return finish_error(self, id, unavailable(st, ""));
  if (!j.queued) {
    j.queued = true;
    j.queue_gen = ++st.next_queue_gen;
    st.queue.push_back(id);
    self->delayed_send(self, st.opts->queue_timeout, atom::expire_v, id, j.queue_gen);
  }
}

template <class T>
void on_reply(balancer_ptr self, uint64_t id, uint32_t attempt, caf::expected<T> res) {
  auto& st = self->state;
  auto i = st.jobs.find(id);
  if (i == st.jobs.end())
    return;
  auto& j = i->second;
  if (j.attempts != attempt || j.node < 0)
    return; // an earlier attempt's late answer
  auto idx = static_cast<size_t>(j.node);
  auto weight = j.weight();
  release(st, j);
  if (res) {
    st.mon->update(idx, [weight](node_status& s) { s.completed += weight; });
    if constexpr (std::is_same_v<T, group_result>)
      j.rp_group.deliver(std::move(*res));
    else
      j.rp_one.deliver(std::move(*res));
    st.jobs.erase(i);
    return;
  }
  auto& err = res.error();
  auto code = code_of(err);
  bool reroutable = (code && (*code == errc::node_down || *code == errc::cancelled))
                    || err == caf::sec::request_receiver_down;
  // `cancelled` without a cancel from our caller means the node shut down.
  if (reroutable && !j.cancelled && !st.stopping) {
    st.mon->update(idx, [weight](node_status& s) { s.rerouted += weight; });
    j.last_error = err;
    dispatch(self, id);
    return;
  }
  st.mon->update(idx, [weight](node_status& s) { s.failed += weight; });
  if (j.cancelled && reroutable)
    err = make_error(errc::cancelled, "sample cancelled by the caller");
  finish_error(self, id, std::move(err));
}

void dispatch(balancer_ptr self, uint64_t id) {
  auto& st = self->state;
  auto i = st.jobs.find(id);
  if (i == st.jobs.end())
    return;
  auto& j = i->second;
  if (j.cancelled)
    return finish_error(self, id, make_error(errc::cancelled, "sample cancelled by the caller"));
  if (j.attempts >= st.opts->max_attempts)
    return finish_error(self, id,
                        make_error(errc::node_down,
                                   "gave up after " + std::to_string(j.attempts)
                                     + " dispatches; last error: " + render(j.last_error)));
  auto idx = pick(st);
  if (idx < 0)
    return enqueue(self, id);
  auto& n = st.nodes[static_cast<size_t>(idx)];
  j.node = idx;
  auto attempt = ++j.attempts;
  n.in_flight += j.weight();
  auto in_flight = n.in_flight;
  st.mon->update(static_cast<size_t>(idx),
                 [in_flight](node_status& s) { s.in_flight = in_flight; });
  auto timeout = st.opts->request_timeout + proxy_margin;
  if (j.group) {
    self->request(n.proxy, timeout, atom::sample_group_v, j.req, j.n)
      .then(
        [self, id, attempt](group_result& r) {
          on_reply<group_result>(self, id, attempt, std::move(r));
        },
        [self, id, attempt](caf::error& err) {
          on_reply<group_result>(self, id, attempt, std::move(err));
        });
  } else {
    self->request(n.proxy, timeout, atom::sample_v, j.req)
      .then(
        [self, id, attempt](tokens_with_logprobs& r) {
          on_reply<tokens_with_logprobs>(self, id, attempt, std::move(r));
        },
        [self, id, attempt](caf::error& err) {
          on_reply<tokens_with_logprobs>(self, id, attempt, std::move(err));
        });
  }
}

void drain_queue(balancer_ptr self) {
  auto& st = self->state;
  auto ids = std::vector<uint64_t>(st.queue.begin(), st.queue.end());
  st.queue.clear();
  for (auto id : ids) {
    auto i = st.jobs.find(id);
    if (i == st.jobs.end())
      continue;
    i->second.queued = false;
    dispatch(self, id);
  }
}

void merge_into(completer_stats& sum, const completer_stats& x) {
  sum.in_flight += x.in_flight;
  sum.completed += x.completed;
  sum.polls += x.polls;
  for (auto& [k, v] : x.failed_by_kind)
    sum.failed_by_kind[k] += v;
  for (auto& [k, v] : x.retries_by_cause)
    sum.retries_by_cause[k] += v;
  merge_into(sum.guard, x.guard);
}

balancer_actor::behavior_type balancer_behavior(balancer_ptr self,
                                                std::shared_ptr<const cluster_options> opts,
                                                std::shared_ptr<cluster_monitor> mon,
                                                bool tls) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.mon = std::move(mon);
  st.rng.seed(st.opts->seed != 0 ? st.opts->seed : std::random_device{}());
  auto me = caf::actor_cast<balancer_actor>(self);
  for (uint32_t i = 0; i < st.opts->nodes.size(); ++i) {
    node_entry n;
    n.proxy = self->spawn(proxy_behavior, i, st.opts, st.mon, me, tls);
    self->monitor(n.proxy);
    st.nodes.push_back(std::move(n));
  }
  self->set_down_handler([self](caf::down_msg& dm) {
    // A proxy ended without being told to: take its work elsewhere.
    auto& st = self->state;
    for (size_t idx = 0; idx < st.nodes.size(); ++idx) {
      auto& n = st.nodes[idx];
      if (n.proxy.address() != dm.source)
        continue;
      n.ready = false;
      n.alive = false;
      n.last_error = make_error(errc::node_down, "node proxy ended: " + render(dm.reason));
      auto text = render(n.last_error);
      st.mon->update(idx, [&](node_status& s) {
        s.state = node_state::stopped;
        s.last_error = text;
      });
      if (st.stopping)
        return;
      std::vector<uint64_t> ids;
      for (auto& [id, j] : st.jobs)
        if (j.node == static_cast<int32_t>(idx))
          ids.push_back(id);
      for (auto id : ids) {
        auto i = st.jobs.find(id);
        if (i == st.jobs.end())
          continue;
        release(st, i->second);
        i->second.last_error = n.last_error;
        dispatch(self, id);
      }
      return;
    }
  });
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    st.stopping = true;
    for (auto& n : st.nodes)
      if (n.alive)
        self->send_exit(n.proxy, em.reason);
    std::vector<uint64_t> ids;
    for (auto& [id, j] : st.jobs)
      ids.push_back(id);
    for (auto id : ids)
      finish_error(self, id, make_error(errc::cancelled, "cluster shutting down"));
    self->quit(em.reason);
  });
  return {
    [self](atom::sample, sample_request& req) -> caf::result<tokens_with_logprobs> {
      if (auto err = validate(req))
        return err;
      auto& st = self->state;
      // The key is fixed before the first send: every re-route reuses it.
      if (req.key.empty())
        req.key = st.new_key();
      auto id = ++st.next_job;
      job j;
      j.req = std::move(req);
      j.rp_one = self->make_response_promise<tokens_with_logprobs>();
      auto rp = j.rp_one;
      st.jobs.emplace(id, std::move(j));
      dispatch(self, id);
      return rp;
    },
    [self](atom::sample_group, sample_request& req, uint32_t n) -> caf::result<group_result> {
      if (n == 0)
        return invalid_argument("n", "group size must be at least 1");
      if (auto err = validate(req))
        return err;
      auto& st = self->state;
      // Key and group id fixed before the first send: member keys are
      // key + "." + i on every node, and the group id names the same group.
      if (req.key.empty())
        req.key = st.new_key();
      if (req.group_id.empty())
        req.group_id = st.new_key();
      auto id = ++st.next_job;
      job j;
      j.group = true;
      j.n = n;
      j.req = std::move(req);
      j.rp_group = self->make_response_promise<group_result>();
      auto rp = j.rp_group;
      st.jobs.emplace(id, std::move(j));
      dispatch(self, id);
      return rp;
    },
    [self](atom::cancel, std::string& what) {
      auto& st = self->state;
      std::vector<uint64_t> queued;
      for (auto& [id, j] : st.jobs) {
        if (j.req.key == what || (!j.req.group_id.empty() && j.req.group_id == what)) {
          j.cancelled = true;
          if (j.queued)
            queued.push_back(id);
        }
      }
      for (auto id : queued)
        finish_error(self, id, make_error(errc::cancelled, "sample cancelled by the caller"));
      for (auto& n : st.nodes)
        if (n.alive)
          self->send(n.proxy, atom::cancel_v, what);
    },
    [self](atom::stats) -> caf::result<completer_stats> {
      auto& st = self->state;
      struct aggregate {
        completer_stats sum;
        size_t pending = 0;
        caf::typed_response_promise<completer_stats> rp;
      };
      auto agg = std::make_shared<aggregate>();
      agg->rp = self->make_response_promise<completer_stats>();
      // Work waiting for a node counts as in flight.
      agg->sum.in_flight = st.queue.size();
      std::vector<proxy_actor> ready;
      for (auto& n : st.nodes)
        if (n.ready)
          ready.push_back(n.proxy);
      agg->pending = ready.size();
      if (ready.empty()) {
        agg->rp.deliver(agg->sum);
        return agg->rp;
      }
      auto timeout = st.opts->stats_timeout + proxy_margin;
      for (auto& p : ready) {
        self->request(p, timeout, atom::stats_v)
          .then(
            [agg](completer_stats& s) {
              merge_into(agg->sum, s);
              if (--agg->pending == 0)
                agg->rp.deliver(agg->sum);
            },
            [agg](caf::error&) {
              if (--agg->pending == 0)
                agg->rp.deliver(agg->sum);
            });
      }
      return agg->rp;
    },
    [self](atom::node_up, uint32_t idx) {
      auto& st = self->state;
      if (idx >= st.nodes.size() || st.stopping)
        return;
      st.nodes[idx].ready = true;
      st.nodes[idx].last_error = caf::none;
      st.mon->update(idx, [](node_status& s) { s.state = node_state::ready; });
      drain_queue(self);
    },
    [self](atom::node_lost, uint32_t idx, caf::error& err) {
      auto& st = self->state;
      if (idx >= st.nodes.size())
        return;
      st.nodes[idx].ready = false;
      st.nodes[idx].last_error = std::move(err);
      st.mon->update(idx, [](node_status& s) {
        if (s.state != node_state::stopped)
          s.state = node_state::lost;
      });
      if (all_rejected(st))
        fail_queue(self, unavailable(st, ""));
    },
    [self](atom::expire, uint64_t id, uint64_t gen) {
      auto& st = self->state;
      auto i = st.jobs.find(id);
      if (i == st.jobs.end() || !i->second.queued || i->second.queue_gen != gen)
        return;
      finish_error(self, id,
                   unavailable(st, "no service node ready within "
                                     + caf::deep_to_string(st.opts->queue_timeout)));
    },
  };
}

} // namespace

caf::expected<completer_actor> spawn_cluster(caf::actor_system& sys, cluster_options opts,
                                             std::shared_ptr<cluster_monitor> monitor) {
  if (auto err = validate(opts))
    return err;
  auto tls = resolve_tls(sys, opts.security);
  if (!tls)
    return std::move(tls.error());
  if (!monitor)
    monitor = std::make_shared<cluster_monitor>(opts.nodes);
  auto shared = std::make_shared<const cluster_options>(std::move(opts));
  balancer_actor b = sys.spawn(balancer_behavior, shared, monitor, *tls);
  return completer_actor{b};
}

// -- cluster ------------------------------------------------------------------------------

cluster::cluster(caf::actor_system& sys, cluster_options opts)
  : sys_(sys), opts_(std::move(opts)) {
}

caf::expected<std::unique_ptr<cluster>> cluster::start(caf::actor_system& sys,
                                                       cluster_options opts) {
  std::unique_ptr<cluster> c{new cluster(sys, std::move(opts))};
  c->monitor_ = std::make_shared<cluster_monitor>(c->opts_.nodes);
  auto b = spawn_cluster(sys, c->opts_, c->monitor_);
  if (!b)
    return std::move(b.error());
  c->balancer_ = std::move(*b);
  return c;
}

cluster::~cluster() {
  shutdown();
}

bool cluster::wait_ready(size_t n, caf::timespan timeout) const {
  return monitor_->wait(
    [n](const std::vector<node_status>& xs) {
      return static_cast<size_t>(std::count_if(xs.begin(), xs.end(), [](auto& x) {
               return x.state == node_state::ready;
             }))
             >= n;
    },
    timeout);
}

namespace {

template <class T, class... Ts>
std::future<caf::expected<T>> call(caf::actor_system& sys, completer_actor h,
                                   caf::timespan timeout, Ts... xs) {
  auto p = std::make_shared<std::promise<caf::expected<T>>>();
  auto f = p->get_future();
  if (!h) {
    p->set_value(make_error(errc::cancelled, "cluster shut down"));
    return f;
  }
  // The handle travels as a spawn argument: CAF 0.17.6 dereferences a null
  // argument tuple for functions spawned without arguments (UBSan).
  sys.spawn([p, timeout, xs...](caf::event_based_actor* self, completer_actor h) mutable {
    self->request(h, timeout, std::move(xs)...)
      .then(
        [p, self](T& res) {
          p->set_value(std::move(res));
          self->quit();
        },
        [p, self](caf::error& err) {
          p->set_value(std::move(err));
          self->quit();
        });
  }, h);
  return f;
}

} // namespace

std::future<cluster::sample_result> cluster::sample(sample_request req) {
  auto timeout = opts_.request_timeout + opts_.queue_timeout + 2 * proxy_margin;
  return call<tokens_with_logprobs>(sys_, balancer_, timeout, atom::sample_v, std::move(req));
}

std::future<cluster::group_reply> cluster::sample_group(sample_request req, uint32_t n) {
  auto timeout = opts_.request_timeout + opts_.queue_timeout + 2 * proxy_margin;
  return call<group_result>(sys_, balancer_, timeout, atom::sample_group_v, std::move(req), n);
}

void cluster::cancel(std::string key_or_group) {
  if (balancer_)
    caf::anon_send(balancer_, atom::cancel_v, std::move(key_or_group));
}

caf::expected<completer_stats> cluster::stats() {
  if (!balancer_)
    return make_error(errc::cancelled, "cluster shut down");
  caf::scoped_actor self{sys_};
  caf::expected<completer_stats> result{completer_stats{}};
  self->request(balancer_, opts_.stats_timeout + 2 * proxy_margin, atom::stats_v)
    .receive([&](completer_stats& s) { result = std::move(s); },
             [&](caf::error& err) { result = std::move(err); });
  return result;
}

void cluster::shutdown(caf::timespan grace) {
  if (stopped_)
    return;
  stopped_ = true;
  if (!balancer_)
    return;
  caf::scoped_actor self{sys_};
  self->monitor(balancer_);
  self->send_exit(balancer_, caf::exit_reason::user_shutdown);
  bool down = false;
  self->receive([&](caf::down_msg&) { down = true; }, caf::after(grace) >> [] {});
  if (!down)
    self->send_exit(balancer_, caf::exit_reason::kill);
  // The proxies got their exit from the balancer; wait until they are gone.
  monitor_->wait(
    [](const std::vector<node_status>& xs) {
      return std::all_of(xs.begin(), xs.end(),
                         [](auto& x) { return x.state == node_state::stopped; });
    },
    grace);
  balancer_ = nullptr;
}

} // namespace sail
