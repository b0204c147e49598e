#include "sail_tinker/actors/metering.hpp"

#include <algorithm>
#include <chrono>

#include <caf/typed_response_promise.hpp>

#include "sail_tinker/messages/fwd.hpp"

namespace sail {

// -- request_metrics -------------------------------------------------------------

request_metrics::request_metrics() {
  ops_.emplace("sample", op_data{});
  ops_.emplace("sample_group", op_data{});
}

void request_metrics::record(const std::string& op, caf::timespan latency, bool ok) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& d = ops_[op];
  d.latency.observe(latency_buckets_s, std::chrono::duration<double>(latency).count());
  if (ok)
    ++d.ok;
  else
    ++d.failed;
}

std::map<std::string, request_metrics::op_data> request_metrics::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return ops_;
}

// -- metering_state ----------------------------------------------------------------

caf::result<tokens_with_logprobs> metering_state::sample(sample_request& req) {
  return forward<tokens_with_logprobs>("sample", atom::sample_v, std::move(req));
}

caf::result<group_result> metering_state::sample_group(sample_request& req, uint32_t n) {
  return forward<group_result>("sample_group", atom::sample_group_v, std::move(req), n);
}

void metering_state::cancel(std::string& what) {
  self->send(inner, atom::cancel_v, std::move(what));
}

caf::result<completer_stats> metering_state::stats() {
  auto rp = self->make_response_promise<completer_stats>();
  self->request(inner, std::chrono::seconds(10), atom::stats_v)
    .then([rp](completer_stats& s) mutable { rp.deliver(std::move(s)); },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

void metering_state::on_down(const caf::down_msg& dm) {
  self->quit(dm.reason);
}

template <class T, class... Ts>
caf::result<T> metering_state::forward(const char* op, Ts... xs) {
  using clock_type = std::chrono::steady_clock;
  auto rp = self->make_response_promise<T>();
  auto start = clock_type::now();
  self->request(inner, caf::infinite, std::move(xs)...)
    .then(
      [rp, start, m = metrics, op](T& res) mutable {
        m->record(op, clock_type::now() - start, true);
        rp.deliver(std::move(res));
      },
      [rp, start, m = metrics, op](caf::error& err) mutable {
        m->record(op, clock_type::now() - start, false);
        rp.deliver(std::move(err));
      });
  return rp;
}

// -- behaviour ------------------------------------------------------------------------

metering_actor::behavior_type metering_front(metering_ptr self, completer_actor inner,
                                             std::shared_ptr<request_metrics> metrics) {
  auto& st = self->state;
  st.inner = std::move(inner);
  st.metrics = std::move(metrics);
  self->monitor(st.inner);
  self->set_down_handler([self](caf::down_msg& dm) { self->state.on_down(dm); });
  // Remote trainers talk to this front: their unexpected messages are dropped
  // unprinted (see service_behavior: printing one could crash the node).
  self->set_default_handler(caf::drop);
  return {
    [self](atom::sample, sample_request& req) { return self->state.sample(req); },
    [self](atom::sample_group, sample_request& req, uint32_t n) {
      return self->state.sample_group(req, n);
    },
    [self](atom::cancel, std::string& what) { self->state.cancel(what); },
    [self](atom::stats) { return self->state.stats(); },
  };
}

metering_actor spawn_metering_front(caf::actor_system& sys, completer_actor inner,
                                    std::shared_ptr<request_metrics> metrics) {
  return sys.spawn(metering_front, std::move(inner), std::move(metrics));
}

} // namespace sail
