#include "sail_tinker/actors/balancer.hpp"

#include <algorithm>
#include <type_traits>

#include <boost/uuid/uuid_io.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail {

namespace {

bool config_rejected(const caf::error& err) {
  auto code = code_of(err);
  return code && (*code == errc::invalid_argument || *code == errc::not_configured);
}

/// One stats request: the ready nodes' answers, summed as they arrive; a node
/// that fails to answer counts as nothing.
struct stats_sum {
  completer_stats sum;
  size_t pending = 0;
  caf::typed_response_promise<completer_stats> rp;

  void add(const completer_stats* x) {
    if (x != nullptr)
      merge_into(sum, *x);
    if (--pending == 0)
      rp.deliver(sum);
  }
};

} // namespace

std::string balancer_state::new_key() {
  return boost::uuids::to_string(uuids());
}

void balancer_state::start(bool tls) {
  rng.seed(opts->seed != 0 ? opts->seed : std::random_device{}());
  node_events_actor events = caf::actor_cast<balancer_actor>(self);
  for (uint32_t i = 0; i < opts->nodes.size(); ++i) {
    node_entry n;
    n.proxy = self->spawn(node_proxy, i, opts, mon, events, tls);
    self->monitor(n.proxy);
    nodes.push_back(std::move(n));
  }
}

// -- handlers -------------------------------------------------------------------------

caf::result<tokens_with_logprobs> balancer_state::sample(sample_request& req) {
  if (auto err = validate(req))
    return err;
  // The key is fixed before the first send: every re-route reuses it.
  if (req.key.empty())
    req.key = new_key();
  auto id = ++next_request;
  routed_request r;
  r.req = std::move(req);
  r.rp_one = self->make_response_promise<tokens_with_logprobs>();
  auto rp = r.rp_one;
  requests.emplace(id, std::move(r));
  dispatch(id);
  return rp;
}

caf::result<group_result> balancer_state::sample_group(sample_request& req, uint32_t n) {
  if (n == 0)
    return invalid_argument("n", "group size must be at least 1");
  if (auto err = validate(req))
    return err;
  // Key and group id fixed before the first send: member keys are
  // key + "." + i on every node, and the group id names the same group.
  if (req.key.empty())
    req.key = new_key();
  if (req.group_id.empty())
    req.group_id = new_key();
  auto id = ++next_request;
  routed_request r;
  r.group = true;
  r.n = n;
  r.req = std::move(req);
  r.rp_group = self->make_response_promise<group_result>();
  auto rp = r.rp_group;
  requests.emplace(id, std::move(r));
  dispatch(id);
  return rp;
}

void balancer_state::cancel(const std::string& what) {
  std::vector<uint64_t> queued;
  for (auto& [id, r] : requests) {
    if (r.req.key == what || (!r.req.group_id.empty() && r.req.group_id == what)) {
      r.cancelled = true;
      if (r.queued)
        queued.push_back(id);
    }
  }
  for (auto id : queued)
    finish_error(id, make_error(errc::cancelled, "sample cancelled by the caller"));
  for (auto& n : nodes)
    if (n.alive)
      self->send(n.proxy, atom::cancel_v, what);
}

caf::result<completer_stats> balancer_state::stats() {
  auto agg = std::make_shared<stats_sum>();
  agg->rp = self->make_response_promise<completer_stats>();
  // Work waiting for a node counts as in flight.
  agg->sum.in_flight = queue.size();
  std::vector<node_proxy_actor> ready;
  for (auto& n : nodes)
    if (n.ready)
      ready.push_back(n.proxy);
  agg->pending = ready.size();
  if (ready.empty()) {
    agg->rp.deliver(agg->sum);
    return agg->rp;
  }
  auto timeout = opts->stats_timeout + proxy_margin;
  for (auto& p : ready)
    self->request(p, timeout, atom::stats_v)
      .then([agg](completer_stats& s) { agg->add(&s); },
            [agg](caf::error&) { agg->add(nullptr); });
  return agg->rp;
}

void balancer_state::node_up(uint32_t idx, webhook_endpoint& hook) {
  if (idx >= nodes.size() || stopping)
    return;
  nodes[idx].ready = true;
  nodes[idx].webhook = std::move(hook);
  nodes[idx].last_error = caf::none;
  mon->update(idx, [](node_status& s) { s.state = node_state::ready; });
  drain_queue();
}

void balancer_state::node_lost(uint32_t idx, caf::error& err) {
  if (idx >= nodes.size())
    return;
  nodes[idx].ready = false;
  nodes[idx].last_error = std::move(err);
  mon->update(idx, [](node_status& s) {
    if (s.state != node_state::stopped)
      s.state = node_state::lost;
  });
  if (all_rejected())
    fail_queue(unavailable(""));
}

void balancer_state::expire(uint64_t id, uint64_t gen) {
  auto i = requests.find(id);
  if (i == requests.end() || !i->second.queued || i->second.queue_gen != gen)
    return;
  finish_error(id, unavailable("no service node ready within "
                               + caf::deep_to_string(opts->queue_timeout)));
}

void balancer_state::on_down(const caf::down_msg& dm) {
  for (size_t idx = 0; idx < nodes.size(); ++idx) {
    auto& n = nodes[idx];
    if (n.proxy.address() != dm.source)
      continue;
    n.ready = false;
    n.alive = false;
    n.last_error = make_error(errc::node_down, "node proxy ended: " + render(dm.reason));
    auto text = render(n.last_error);
    mon->update(idx, [&](node_status& s) {
      s.state = node_state::stopped;
      s.last_error = text;
    });
    if (stopping)
      return;
    // Collect first: dispatch may finish (erase) requests.
    std::vector<uint64_t> ids;
    for (auto& [id, r] : requests)
      if (r.node == static_cast<int32_t>(idx))
        ids.push_back(id);
    for (auto id : ids) {
      auto i = requests.find(id);
      if (i == requests.end())
        continue;
      release(i->second);
      i->second.last_error = n.last_error;
      dispatch(id);
    }
    return;
  }
}

void balancer_state::on_exit(const caf::exit_msg& em) {
  stopping = true;
  for (auto& n : nodes)
    if (n.alive)
      self->send_exit(n.proxy, em.reason);
  std::vector<uint64_t> ids;
  for (auto& [id, r] : requests)
    ids.push_back(id);
  for (auto id : ids)
    finish_error(id, make_error(errc::cancelled, "cluster shutting down"));
  self->quit(em.reason);
}

// -- routing --------------------------------------------------------------------------

void balancer_state::dispatch(uint64_t id) {
  auto i = requests.find(id);
  if (i == requests.end())
    return;
  auto& r = i->second;
  if (r.cancelled)
    return finish_error(id, make_error(errc::cancelled, "sample cancelled by the caller"));
  if (r.routes >= opts->max_routes)
    return finish_error(id, make_error(errc::node_down,
                                       "gave up after " + std::to_string(r.routes)
                                         + " dispatches; last error: " + render(r.last_error)));
  auto idx = pick(r.refused_by);
  if (idx < 0)
    return enqueue(id);
  auto& n = nodes[static_cast<size_t>(idx)];
  r.node = idx;
  // The create body under the sample's key is fixed by its first node: pin
  // that node's webhook (or none) so that every later node sends the same.
  if (!r.req.webhook)
    r.req.webhook = n.webhook;
  auto route = ++r.routes;
  n.in_flight += r.weight();
  auto in_flight = n.in_flight;
  mon->update(static_cast<size_t>(idx), [in_flight](node_status& s) { s.in_flight = in_flight; });
  if (r.group)
    send_route<group_result>(n.proxy, id, route, atom::sample_group_v, r.req, r.n);
  else
    send_route<tokens_with_logprobs>(n.proxy, id, route, atom::sample_v, r.req);
}

template <class T, class... Ts>
void balancer_state::send_route(const node_proxy_actor& proxy, uint64_t id, uint32_t route,
                                Ts... xs) {
  auto timeout = opts->request_timeout + proxy_margin;
  self->request(proxy, timeout, std::move(xs)...)
    .then(
      [self = self, id, route](T& res) { self->state.on_reply<T>(id, route, std::move(res)); },
      [self = self, id, route](caf::error& err) {
        self->state.on_reply<T>(id, route, std::move(err));
      });
}

int32_t balancer_state::pick(const std::vector<int32_t>& avoid) {
  auto avoided = [&](size_t i) {
    return std::find(avoid.begin(), avoid.end(), static_cast<int32_t>(i)) != avoid.end();
  };
  bool other_ready = false;
  for (size_t i = 0; i < nodes.size() && !other_ready; ++i)
    other_ready = nodes[i].ready && !avoided(i);
  std::vector<int32_t> best;
  uint64_t least = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto& n = nodes[i];
    if (!n.ready || (other_ready && avoided(i)))
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
  return best[dist(rng)];
}

void balancer_state::release(routed_request& r) {
  if (r.node < 0)
    return;
  auto& n = nodes[static_cast<size_t>(r.node)];
  n.in_flight -= std::min(n.in_flight, r.weight());
  auto in_flight = n.in_flight;
  mon->update(static_cast<size_t>(r.node),
              [in_flight](node_status& s) { s.in_flight = in_flight; });
  r.node = -1;
}

void balancer_state::enqueue(uint64_t id) {
  auto& r = requests[id];
  if (all_rejected())
    return finish_error(id, unavailable(""));
  if (!r.queued) {
    r.queued = true;
    r.queue_gen = ++next_queue_gen;
    queue.push_back(id);
    self->delayed_send(self, opts->queue_timeout, atom::expire_v, id, r.queue_gen);
  }
}

void balancer_state::drain_queue() {
  auto ids = std::vector<uint64_t>(queue.begin(), queue.end());
  queue.clear();
  for (auto id : ids) {
    auto i = requests.find(id);
    if (i == requests.end())
      continue;
    i->second.queued = false;
    dispatch(id);
  }
}

template <class T>
void balancer_state::on_reply(uint64_t id, uint32_t route, caf::expected<T> res) {
  auto i = requests.find(id);
  if (i == requests.end())
    return;
  auto& r = i->second;
  if (r.routes != route || r.node < 0)
    return; // an earlier route's late answer
  auto idx = static_cast<size_t>(r.node);
  auto weight = r.weight();
  release(r);
  if (res) {
    mon->update(idx, [weight](node_status& s) { s.completed += weight; });
    if constexpr (std::is_same_v<T, group_result>)
      r.rp_group.deliver(std::move(*res));
    else
      r.rp_one.deliver(std::move(*res));
    requests.erase(i);
    return;
  }
  auto& err = res.error();
  auto code = code_of(err);
  bool reroutable = (code && (*code == errc::node_down || *code == errc::cancelled))
                    || err == caf::sec::request_receiver_down;
  // `cancelled` without a cancel from our caller means the node shut down.
  if (reroutable && !r.cancelled && !stopping) {
    mon->update(idx, [weight](node_status& s) { s.rerouted += weight; });
    r.last_error = err;
    r.refused_by.push_back(static_cast<int32_t>(idx));
    dispatch(id);
    return;
  }
  mon->update(idx, [weight](node_status& s) { s.failed += weight; });
  if (r.cancelled && reroutable)
    err = make_error(errc::cancelled, "sample cancelled by the caller");
  finish_error(id, std::move(err));
}

void balancer_state::finish_error(uint64_t id, caf::error err) {
  auto i = requests.find(id);
  if (i == requests.end())
    return;
  auto& r = i->second;
  release(r);
  if (r.queued) {
    queue.erase(std::remove(queue.begin(), queue.end(), id), queue.end());
    r.queued = false;
  }
  if (r.group)
    r.rp_group.deliver(std::move(err));
  else
    r.rp_one.deliver(std::move(err));
  requests.erase(i);
}

void balancer_state::fail_queue(const caf::error& err) {
  auto ids = std::vector<uint64_t>(queue.begin(), queue.end());
  for (auto id : ids)
    finish_error(id, err);
}

bool balancer_state::all_rejected() const {
  for (auto& n : nodes)
    if (n.ready || !config_rejected(n.last_error))
      return false;
  return !nodes.empty();
}

caf::error balancer_state::unavailable(const std::string& why) const {
  bool rejected = !nodes.empty();
  for (auto& n : nodes)
    rejected = rejected && !n.ready && config_rejected(n.last_error);
  if (rejected)
    return nodes.front().last_error;
  std::string last;
  for (auto& n : nodes)
    if (n.last_error) {
      last = render(n.last_error);
      break;
    }
  return make_error(errc::node_down,
                    why + (last.empty() ? std::string{} : " (last error: " + last + ")"));
}

// -- behaviour ------------------------------------------------------------------------

balancer_actor::behavior_type balancer(balancer_ptr self,
                                       std::shared_ptr<const cluster_options> opts,
                                       std::shared_ptr<cluster_monitor> mon, bool tls) {
  self->state.opts = std::move(opts);
  self->state.mon = std::move(mon);
  self->state.start(tls);
  self->set_down_handler([self](caf::down_msg& dm) { self->state.on_down(dm); });
  self->set_exit_handler([self](caf::exit_msg& em) { self->state.on_exit(em); });
  return {
    [self](atom::sample, sample_request& req) { return self->state.sample(req); },
    [self](atom::sample_group, sample_request& req, uint32_t n) {
      return self->state.sample_group(req, n);
    },
    [self](atom::cancel, std::string& what) { self->state.cancel(what); },
    [self](atom::stats) { return self->state.stats(); },
    [self](atom::node_up, uint32_t idx, webhook_endpoint& hook) {
      self->state.node_up(idx, hook);
    },
    [self](atom::node_lost, uint32_t idx, caf::error& err) { self->state.node_lost(idx, err); },
    [self](atom::expire, uint64_t id, uint64_t gen) { self->state.expire(id, gen); },
  };
}

} // namespace sail
