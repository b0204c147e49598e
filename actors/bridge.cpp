#include "sail_tinker/actors/bridge.hpp"

#include <unordered_map>
#include <variant>

#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

namespace sail {

namespace {

struct bridge_state;

using bridge_ptr = bridge_actor::stateful_pointer<bridge_state>;

struct bridge_state {
  static inline const char* name = "sail.bridge";

  explicit bridge_state(bridge_ptr self) : self(self) {
  }

  bridge_state(const bridge_state&) = delete;
  bridge_state& operator=(const bridge_state&) = delete;

  /// Safety net: an exit that skipped the exit handler leaves no call open.
  ~bridge_state() {
    fail_all();
  }

  /// The callback of an open call, held once (in place, not in the response
  /// handlers: an open call costs one map node).
  using callback = std::variant<once_callback<tokens_with_logprobs>::function,
                                once_callback<group_result>::function,
                                once_callback<signed_url>::function>;

  bridge_ptr self;
  std::string label;
  uint64_t next = 0;
  std::unordered_map<uint64_t, callback> open;

  // -- handlers (one per message of bridge_actor) ---------------------------------------

  void sample(completer_actor& dst, sample_request& req, caf::duration timeout,
              once_callback<tokens_with_logprobs>& done) {
    call(dst, timeout, done, atom::sample_v, std::move(req));
  }

  void sample_group(completer_actor& dst, sample_request& req, uint32_t n,
                    caf::duration timeout, once_callback<group_result>& done) {
    call(dst, timeout, done, atom::sample_group_v, std::move(req), n);
  }

  void resolve(resolver_actor& dst, resolve_request& req, caf::duration timeout,
               once_callback<signed_url>& done) {
    call(dst, timeout, done, atom::resolve_v, std::move(req));
  }

  /// On exit: every open call fails with `cancelled`, so no future is left
  /// waiting (CAF 0.17 has no broken_promise).
  void on_exit(caf::exit_msg& em) {
    fail_all();
    self->quit(em.reason);
  }

  // -- the one call path ------------------------------------------------------------------

  template <class T, class Handle, class... Ts>
  void call(const Handle& dst, caf::duration timeout, once_callback<T>& done, Ts&&... xs) {
    auto fn = done.release();
    if (!fn)
      return;
    if (!dst) {
      fn(make_error(errc::cancelled, "the destination actor is gone"));
      return;
    }
    auto id = ++next;
    open.emplace(id, std::move(fn));
    self->request(dst, timeout, std::forward<Ts>(xs)...)
      .then([this, id](T& res) { finish<T>(id, std::move(res)); },
            [this, id](caf::error& err) { finish<T>(id, typed_call_error(std::move(err))); });
  }

  /// Runs and forgets open call `id` (no-op if it already ran).
  template <class T>
  void finish(uint64_t id, caf::expected<T> res) {
    auto i = open.find(id);
    if (i == open.end())
      return;
    auto fn = std::move(std::get<typename once_callback<T>::function>(i->second));
    open.erase(i);
    fn(std::move(res));
  }

  void fail_all() {
    auto pending = std::move(open);
    open.clear();
    for (auto& [id, fn] : pending)
      std::visit([this](auto& f) { f(make_error(errc::cancelled, label + " shutting down")); },
                 fn);
  }
};

bridge_actor::behavior_type bridge_behavior(bridge_ptr self, std::string label) {
  self->state.label = std::move(label);
  self->set_exit_handler([self](caf::exit_msg& em) { self->state.on_exit(em); });
  return {
    [self](atom::sample, completer_actor& dst, sample_request& req, caf::duration timeout,
           once_callback<tokens_with_logprobs>& done) {
      self->state.sample(dst, req, timeout, done);
    },
    [self](atom::sample_group, completer_actor& dst, sample_request& req, uint32_t n,
           caf::duration timeout, once_callback<group_result>& done) {
      self->state.sample_group(dst, req, n, timeout, done);
    },
    [self](atom::resolve, resolver_actor& dst, resolve_request& req, caf::duration timeout,
           once_callback<signed_url>& done) {
      self->state.resolve(dst, req, timeout, done);
    },
  };
}

} // namespace

caf::error typed_call_error(caf::error err) {
  if (code_of(err))
    return err;
  if (err == caf::sec::request_timeout)
    return make_error(errc::timeout, "no reply within the call's timeout");
  if (err == caf::sec::request_receiver_down)
    return make_error(errc::cancelled, "the destination actor is gone");
  return err;
}

bridge_actor spawn_bridge(caf::actor_system& sys, std::string label) {
  // With an argument: CAF 0.17.6 dereferences a null argument tuple when a
  // function-based actor is spawned without any (UBSan).
  return sys.spawn(bridge_behavior, std::move(label));
}

} // namespace sail
