#include "sail_tinker/actors/node_proxy.hpp"

#include <algorithm>

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"

namespace sail {

// -- handlers -------------------------------------------------------------------------

caf::result<tokens_with_logprobs> node_proxy_state::sample(sample_request& req) {
  return forward<tokens_with_logprobs>(opts->request_timeout, atom::sample_v, std::move(req));
}

caf::result<group_result> node_proxy_state::sample_group(sample_request& req, uint32_t n) {
  return forward<group_result>(opts->request_timeout, atom::sample_group_v, std::move(req), n);
}

void node_proxy_state::cancel(std::string& what) {
  if (ready)
    self->send(remote, atom::cancel_v, std::move(what));
}

caf::result<completer_stats> node_proxy_state::stats() {
  return forward<completer_stats>(opts->stats_timeout, atom::stats_v);
}

void node_proxy_state::reconnect(uint64_t gen) {
  if (gen == generation && !ready)
    connect();
}

void node_proxy_state::on_down(const caf::down_msg& dm) {
  bool from_front = front && dm.source == front;
  bool from_remote = remote && dm.source == remote.address();
  if (!from_front && !from_remote)
    return;
  if (ready)
    node_lost(dm.reason);
  else
    attempt_failed(generation, dm.reason);
}

void node_proxy_state::on_exit(const caf::exit_msg& em) {
  fail_all(make_error(errc::cancelled, "cluster shutting down"));
  mon->update(index, [](node_status& s) { s.state = node_state::stopped; });
  self->quit(em.reason);
}

// -- connection -----------------------------------------------------------------------

void node_proxy_state::connect() {
  auto gen = ++generation;
  auto& sys = self->system();
  auto mm = tls ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
  self->request(mm, opts->connect_timeout, caf::connect_atom_v, addr().host, addr().port)
    .then(
      [self = self, gen](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>& ifs) {
        self->state.connected(gen, ptr, ifs);
      },
      [self = self, gen](caf::error& err) { self->state.attempt_failed(gen, std::move(err)); });
}

void node_proxy_state::connected(uint64_t gen, caf::strong_actor_ptr& ptr,
                                 std::set<std::string>& ifs) {
  if (gen != generation || ready)
    return;
  if (!ptr)
    return attempt_failed(gen, make_error(errc::transport_error,
                                          "no actor is published at " + addr().to_string()));
  if (!self->system().assignable<completer_service_actor>(ifs)) {
    std::string got;
    for (auto& x : ifs)
      got += (got.empty() ? "" : ", ") + x;
    return attempt_failed(gen, caf::make_error(caf::sec::unexpected_actor_messaging_interface,
                                               std::string{"a sail service"}, got));
  }
  auto svc = caf::actor_cast<completer_service_actor>(std::move(ptr));
  self->monitor(svc);
  front = svc.address();
  self->request(svc, opts->obtain_timeout, atom::obtain_v, opts->config)
    .then([self = self, gen](completer_actor& c,
                             webhook_endpoint& hook) {
            self->state.obtained(gen, std::move(c), std::move(hook));
          },
          [self = self, gen](caf::error& err) { self->state.attempt_failed(gen, std::move(err)); });
}

void node_proxy_state::obtained(uint64_t gen, completer_actor c, webhook_endpoint hook) {
  if (gen != generation || ready)
    return;
  if (!c)
    return attempt_failed(gen, make_error(errc::transport_error, "obtain returned no completer"));
  self->monitor(c);
  remote = std::move(c);
  ready = true;
  backoff = opts->retry_min;
  mon->update(index, [](node_status& s) { ++s.connects; });
  // The balancer marks the node ready in the monitor once it routes to it:
  // cluster::wait_ready() returning means samples can go there.
  self->send(balancer, atom::node_up_v, index, std::move(hook));
}

void node_proxy_state::attempt_failed(uint64_t gen, caf::error err) {
  if (gen != generation || ready)
    return;
  drop_monitors();
  auto text = render(err);
  // The node's state in the monitor is the balancer's to set (node_lost),
  // so that `ready` there always means "the balancer routes to it".
  mon->update(index, [&](node_status& s) {
    ++s.failed_attempts;
    s.last_error = text;
  });
  self->send(balancer, atom::node_lost_v, index, std::move(err));
  schedule_reconnect();
}

void node_proxy_state::node_lost(const caf::error& why) {
  drop_monitors();
  auto err = make_error(errc::node_down,
                        "service node " + addr().to_string() + " lost: " + render(why));
  auto text = render(err);
  mon->update(index, [&](node_status& s) {
    ++s.losses;
    s.last_error = text;
  });
  // The balancer hears about the loss before the failures (same sender, so
  // FIFO): it re-routes them to other nodes only.
  self->send(balancer, atom::node_lost_v, index, err);
  fail_all(err);
  backoff = opts->retry_min;
  schedule_reconnect();
}

void node_proxy_state::schedule_reconnect() {
  auto gen = ++generation;
  auto delay = backoff;
  backoff = std::min(backoff * 2, opts->retry_max);
  self->delayed_send(self, delay, atom::reconnect_v, gen);
}

void node_proxy_state::drop_monitors() {
  if (front)
    self->demonitor(front);
  if (remote)
    self->demonitor(remote.address());
  front = nullptr;
  remote = nullptr;
  ready = false;
}

void node_proxy_state::fail_all(const caf::error& err) {
  // Collect first: a callback must not run while the map is iterated.
  auto open = std::move(inflight);
  inflight.clear();
  for (auto& [id, fail] : open)
    fail(err);
}

// -- requests to the node -------------------------------------------------------------

caf::error node_proxy_state::link_error(caf::error err) const {
  if (code_of(err))
    return err;
  if (err == caf::sec::request_timeout)
    return make_error(errc::timeout,
                      "service node " + addr().to_string() + " did not answer in time");
  return make_error(errc::node_down, "service node " + addr().to_string() + ": " + render(err));
}

template <class T, class... Ts>
caf::result<T> node_proxy_state::forward(caf::timespan timeout, Ts... xs) {
  if (!ready)
    return make_error(errc::node_down, "service node " + addr().to_string() + " is not connected");
  auto rp = self->make_response_promise<T>();
  auto id = ++next_id;
  inflight.emplace(id, [rp](caf::error err) mutable { rp.deliver(std::move(err)); });
  self->request(remote, timeout, std::move(xs)...)
    .then(
      [self = self, id, rp](T& res) mutable {
        if (self->state.inflight.erase(id) > 0)
          rp.deliver(std::move(res));
      },
      [self = self, id, rp](caf::error& err) mutable {
        if (self->state.inflight.erase(id) > 0)
          rp.deliver(self->state.link_error(std::move(err)));
      });
  return rp;
}

// -- behaviour ------------------------------------------------------------------------

node_proxy_actor::behavior_type node_proxy(node_proxy_ptr self, uint32_t index,
                                           std::shared_ptr<const cluster_options> opts,
                                           std::shared_ptr<cluster_monitor> mon,
                                           node_events_actor balancer, bool tls) {
  auto& st = self->state;
  st.index = index;
  st.opts = std::move(opts);
  st.mon = std::move(mon);
  st.balancer = std::move(balancer);
  st.tls = tls;
  st.backoff = st.opts->retry_min;
  self->set_down_handler([self](caf::down_msg& dm) { self->state.on_down(dm); });
  self->set_exit_handler([self](caf::exit_msg& em) { self->state.on_exit(em); });
  st.connect();
  return {
    [self](atom::sample, sample_request& req) { return self->state.sample(req); },
    [self](atom::sample_group, sample_request& req, uint32_t n) {
      return self->state.sample_group(req, n);
    },
    [self](atom::cancel, std::string& what) { self->state.cancel(what); },
    [self](atom::stats) { return self->state.stats(); },
    [self](atom::reconnect, uint64_t gen) { self->state.reconnect(gen); },
  };
}

} // namespace sail
