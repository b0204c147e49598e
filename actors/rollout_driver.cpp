#include "sail_tinker/actors/rollout_driver.hpp"

#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/messages/error.hpp"

namespace sail {

void run_event_queue::push(run_event ev) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    items_.push_back(std::move(ev));
  }
  cv_.notify_one();
}

void run_event_queue::wake() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    woken_ = true;
  }
  cv_.notify_one();
}

void run_event_queue::wait(std::vector<run_event>& out, clock_type::time_point until) {
  std::unique_lock<std::mutex> guard{mtx_};
  cv_.wait_until(guard, until, [this] { return !items_.empty() || woken_; });
  woken_ = false;
  for (auto& ev : items_)
    out.push_back(std::move(ev));
  items_.clear();
}

namespace {

struct run_driver_state {
  static inline const char* name = "sail.rollout_run";

  run_driver_actor::stateful_pointer<run_driver_state> self = nullptr;
  completer_actor target;
  std::shared_ptr<run_event_queue> events;
  /// In flight: ticket -> key, key -> ticket.
  std::unordered_map<uint64_t, std::string> keys;
  std::unordered_map<std::string, uint64_t> tickets;
  bool cancelled = false;

  void launch(uint64_t ticket, sample_request& req) {
    if (cancelled) {
      finish(ticket, make_error(errc::cancelled, "rollout interrupted"));
      return;
    }
    req.observer = caf::actor_cast<sample_observer_actor>(self);
    keys.emplace(ticket, req.key);
    tickets.emplace(req.key, ticket);
    // No CAF timeout: the completer (or the cluster's balancer) answers every
    // sample -- result, typed timeout at the sample's deadline, cancelled --
    // and a CAF 0.17 request timeout would stay in the clock for the whole
    // deadline even after the answer (memory per sample, not per window).
    self->request(target, caf::infinite, atom::sample_v, std::move(req))
      .then([this, ticket](tokens_with_logprobs& res) { finish(ticket, std::move(res)); },
            [this, ticket](caf::error& err) { finish(ticket, std::move(err)); });
  }

  void finish(uint64_t ticket, caf::expected<tokens_with_logprobs> res) {
    if (auto i = keys.find(ticket); i != keys.end()) {
      tickets.erase(i->second);
      keys.erase(i);
    }
    run_event ev;
    ev.ticket = ticket;
    ev.outcome = std::move(res);
    events->push(std::move(ev));
  }

  void accepted(const std::string& key, std::string& response_id) {
    auto i = tickets.find(key);
    if (i == tickets.end())
      return; // already answered
    run_event ev;
    ev.ticket = i->second;
    ev.accepted = true;
    ev.response_id = std::move(response_id);
    events->push(std::move(ev));
  }

  void cancel() {
    if (cancelled)
      return;
    cancelled = true;
    for (auto& [ticket, key] : keys)
      self->send(target, atom::cancel_v, key);
  }
};

run_driver_actor::behavior_type
run_driver(run_driver_actor::stateful_pointer<run_driver_state> self, completer_actor target,
           std::shared_ptr<run_event_queue> events) {
  auto& st = self->state;
  st.self = self;
  st.target = std::move(target);
  st.events = std::move(events);
  return {
    [self](atom::sample, uint64_t ticket, sample_request& req) {
      self->state.launch(ticket, req);
    },
    [self](atom::cancel, const std::string&) { self->state.cancel(); },
    [self](atom::accepted, const std::string& key, std::string& response_id) {
      self->state.accepted(key, response_id);
    },
  };
}

} // namespace

run_driver_actor spawn_run_driver(caf::actor_system& sys, completer_actor target,
                                  std::shared_ptr<run_event_queue> events) {
  return sys.spawn(run_driver, std::move(target), std::move(events));
}

} // namespace sail
