#include "bridge.hpp"

#include <memory>
#include <utility>
#include <vector>

#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/messages/error.hpp"

namespace sail::py {

namespace {

struct bridge_state {
  static inline const char* name = "sail.py_bridge";

  bridge_actor::pointer self = nullptr;
  uint64_t next = 0;
  /// Fails an open call with an error; erased when the call ends.
  std::unordered_map<uint64_t, std::function<void(caf::error)>> open;

  /// Sends `xs...` to `dst` and runs `done` once with the reply or the error.
  /// No CAF timeout unless one is given: completers and the cluster answer
  /// every request (with `cancelled` when they exit), and a CAF 0.17 request
  /// timeout stays in the clock until it fires.
  template <class T, class Handle, class... Ts>
  void call(const Handle& dst, caf::duration timeout,
            std::shared_ptr<once_callback<T>> done, Ts&&... xs) {
    auto id = ++next;
    open.emplace(id, [done](caf::error err) { (*done)(std::move(err)); });
    auto* st = this;
    self->request(dst, timeout, std::forward<Ts>(xs)...)
      .then(
        [st, id, done](T& res) {
          st->open.erase(id);
          (*done)(std::move(res));
        },
        [st, id, done](caf::error& err) {
          st->open.erase(id);
          (*done)(std::move(err));
        });
  }

  void sample(sample_call& c) {
    call<tokens_with_logprobs>(c.completer, caf::infinite, std::move(c.done),
                               atom::sample_v, std::move(c.req));
  }

  void resolve(resolve_call& c) {
    call<signed_url>(c.resolver, caf::duration{c.timeout}, std::move(c.done),
                     atom::resolve_v, std::move(c.req));
  }

  /// No callback is left waiting (CAF 0.17 has no broken_promise).
  void fail_all() {
    auto pending = std::move(open);
    open.clear();
    for (auto& [id, fail] : pending)
      fail(make_error(errc::cancelled, "sail_tinker is shutting down"));
  }
};

bridge_actor::behavior_type
bridge_behavior(bridge_actor::stateful_pointer<bridge_state> self, int /*unused*/) {
  self->state.self = self;
  self->set_exit_handler([self](caf::exit_msg& em) {
    self->state.fail_all();
    self->quit(em.reason);
  });
  return {
    [self](atom::sample, sample_call& c) { self->state.sample(c); },
    [self](atom::resolve, resolve_call& c) { self->state.resolve(c); },
  };
}

} // namespace

bridge_actor spawn_bridge(caf::actor_system& sys) {
  // An argument, because CAF 0.17.6 dereferences a null argument tuple when a
  // function-based actor is spawned without any (see actors/runtime.cpp).
  return sys.spawn(bridge_behavior, 0);
}

} // namespace sail::py
