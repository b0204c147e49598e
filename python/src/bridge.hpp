// The Python binding's callback bridge: one actor per actor system that turns
// "call this completer / resolver, then run this callback" into CAF requests.
// Callbacks run on a CAF scheduler thread and must only hand the result on
// (delivery.hpp); they never touch Python.
//
// Not the runtime's token_completer bridge: the binding also drives clusters
// (no local runtime) and the resolver through it, with one code path.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <memory>
#include <unordered_map>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/interfaces.hpp"

namespace sail::py {

/// A completion callback that runs exactly once: with the reply, or with
/// `cancelled` when the last reference goes away unanswered (a call message
/// dropped from the mailbox of an exiting bridge, say). Never leaves a Python
/// future waiting.
template <class T>
class once_callback {
public:
  using function = std::function<void(caf::expected<T>)>;

  explicit once_callback(function fn) : fn_(std::move(fn)) {
  }

  once_callback(const once_callback&) = delete;
  once_callback& operator=(const once_callback&) = delete;

  ~once_callback() {
    if (fn_)
      fn_(make_error(errc::cancelled, "the call was dropped before it ran"));
  }

  void operator()(caf::expected<T> res) {
    if (auto fn = std::exchange(fn_, nullptr))
      fn(std::move(res));
  }

private:
  function fn_;
};

using sample_done = std::shared_ptr<once_callback<tokens_with_logprobs>>;
using resolve_done = std::shared_ptr<once_callback<signed_url>>;

/// One sample for `completer` (a local completer or a cluster balancer).
struct sample_call {
  completer_actor completer;
  sample_request req;
  sample_done done;
};

/// One resolve, bounded by `timeout` (the resolver bounds its own REST calls;
/// this is the backstop).
struct resolve_call {
  resolver_actor resolver;
  resolve_request req;
  caf::timespan timeout{0};
  resolve_done done;
};

} // namespace sail::py

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::py::sample_call)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::py::resolve_call)

namespace sail::py {

/// Local only. Every call's callback runs exactly once: with the reply, the
/// error, or `cancelled` when the bridge exits (once_callback).
using bridge_actor = caf::typed_actor<caf::reacts_to<atom::sample, sample_call>,
                                      caf::reacts_to<atom::resolve, resolve_call>>;

bridge_actor spawn_bridge(caf::actor_system& sys);

} // namespace sail::py
