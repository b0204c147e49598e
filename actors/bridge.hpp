// The bridge from non-actor code to actors: "send this request to that actor,
// then run this callback with the typed reply" -- for token_completer
// (runtime.hpp), cluster's futures (cluster.hpp) and the Python binding.
//
//   auto bridge = sail::spawn_bridge(sys, "token_completer");
//   auto f = sail::bridge_future<sail::tokens_with_logprobs>(
//     bridge, sail::atom::sample_v, completer, std::move(req), sail::no_call_timeout);
//   caf::expected<sail::tokens_with_logprobs> res = f.get();
//   sail::stop_bounded(sys, bridge, grace);   // bounded_stop.hpp; open calls fail `cancelled`
//
// Contract:
// - Every callback runs exactly once: with the reply, the typed error of the
//   request (a timeout is errc::timeout, see messages/error.hpp), or
//   `cancelled` when the bridge exits with the call open, when the call
//   reaches a bridge that is gone, or when the bridge handle is null.
// - Callbacks run on a CAF scheduler thread (a call that never reached a
//   bridge fails on the thread that sent or dropped it): keep them short,
//   never block.
// - Calls run concurrently (the bridge's requests are asynchronous). A bridge
//   holds one callback per open call and nothing else, so it never keeps a
//   destination alive; the timeout is per call (no_call_timeout: none -- the
//   completers answer every request, `cancelled` when they exit, and a CAF
//   0.17 request timeout stays in the clock until it fires).
// - Blocking helpers for one reply (blocking_request) live here too: a
//   scoped_actor request bounded by its timeout.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/duration.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/interfaces.hpp"

namespace sail {

/// A completion callback that runs exactly once: with the reply, or with
/// `cancelled` when it is destroyed unanswered (a call message dropped from
/// the mailbox of a bridge that is gone, say). Never leaves a future waiting.
///
/// It travels by value inside the call message (no allocation of its own:
/// a separate one per call, made on the caller's thread and freed on a CAF
/// thread, cost ~400 B of RSS per in-flight sample in bench/inflight_bench
/// through heap fragmentation). CAF 0.17 wants message types copyable, so a
/// copy takes the function over and leaves the source empty: exactly one
/// holder can ever run it. A local anon_send never copies (CAF copies a
/// message only to detach a shared one).
template <class T>
class once_callback {
public:
  using function = std::function<void(caf::expected<T>)>;

  once_callback() = default;

  explicit once_callback(function fn) : fn_(std::move(fn)) {
  }

  once_callback(const once_callback& other) : fn_(std::exchange(other.fn_, nullptr)) {
  }

  once_callback(once_callback&& other) noexcept : fn_(std::exchange(other.fn_, nullptr)) {
  }

  once_callback& operator=(const once_callback&) = delete;
  once_callback& operator=(once_callback&&) = delete;

  ~once_callback() {
    if (fn_)
      fn_(make_error(errc::cancelled, "the call was dropped before it ran"));
  }

  void operator()(caf::expected<T> res) {
    if (auto fn = std::exchange(fn_, nullptr))
      fn(std::move(res));
  }

  /// Hands the function over (to the bridge, which then owns the duty to
  /// run it once); empty if it ran or moved already.
  function release() {
    return std::exchange(fn_, nullptr);
  }

private:
  mutable function fn_;
};

} // namespace sail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::once_callback<sail::tokens_with_logprobs>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::once_callback<sail::group_result>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::once_callback<sail::signed_url>)

namespace sail {

/// A call's timeout meaning none (a completer answers every sample).
inline constexpr caf::duration no_call_timeout{caf::infinite};

// bridge_actor, the interface: messages/interfaces.hpp.

/// A bridge; `label` names it in the `cancelled` error of the calls it fails
/// on exit ("<label> shutting down").
bridge_actor spawn_bridge(caf::actor_system& sys, std::string label);

/// Sends call `xs...` (a bridge_actor message without its callback) to
/// `bridge`; `done` runs once with the reply of type T (see the contract
/// above). A null bridge: `done` runs at once with `cancelled`.
template <class T, class... Ts>
void bridge_send(const bridge_actor& bridge, std::function<void(caf::expected<T>)> done,
                 Ts&&... xs) {
  if (!bridge) {
    done(make_error(errc::cancelled, "the bridge is gone (shut down)"));
    return;
  }
  caf::anon_send(bridge, std::forward<Ts>(xs)..., once_callback<T>{std::move(done)});
}

/// The same as a std::future.
template <class T, class... Ts>
std::future<caf::expected<T>> bridge_future(const bridge_actor& bridge, Ts&&... xs) {
  auto promise = std::make_shared<std::promise<caf::expected<T>>>();
  auto future = promise->get_future();
  bridge_send<T>(
    bridge, [promise](caf::expected<T> res) { promise->set_value(std::move(res)); },
    std::forward<Ts>(xs)...);
  return future;
}

/// CAF's own request errors as sail::errc: request_timeout -> timeout,
/// request_receiver_down -> cancelled; any other error unchanged.
caf::error typed_call_error(caf::error err);

/// One request from a non-actor thread, waiting for its reply at most
/// `timeout` (errc::timeout then); `cancelled` for a null destination or
/// one that is gone.
/// Never call it from an actor.
template <class T, class Handle, class... Ts>
caf::expected<T> blocking_request(caf::actor_system& sys, const Handle& dst,
                                  caf::timespan timeout, Ts&&... xs) {
  if (!dst)
    return make_error(errc::cancelled, "the actor is gone (shut down)");
  caf::scoped_actor self{sys};
  caf::expected<T> result{make_error(errc::cancelled, "no reply")};
  self->request(dst, timeout, std::forward<Ts>(xs)...)
    .receive([&](T& x) { result = std::move(x); },
             [&](caf::error& err) { result = typed_call_error(std::move(err)); });
  return result;
}

} // namespace sail
