// Delivery of results to asyncio: CAF callbacks -> a sink (no Python, no GIL)
// -> the notifier thread (takes the GIL only to call
// loop.call_soon_threadsafe) -> dispatcher::drain on the loop's own thread,
// which resolves the futures.
//
// Batching: a sink asks for one drain when it goes from empty to non-empty;
// every completion that arrives before that drain runs rides along. CAF
// threads never wait for the GIL (a blocked scheduler thread would stall
// every actor on it), and the loop wakes once per batch, not per sample.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include <boost/uuid/random_generator.hpp>
#include <caf/expected.hpp>
#include <pybind11/pybind11.h>

#include "sail_tinker/actors/bridge.hpp"
#include "sail_tinker/messages/types.hpp"

namespace sail::py {

namespace pyb = pybind11;

class dispatcher;

/// One finished call, as handed over by a CAF callback.
struct completion {
  uint64_t id = 0;
  std::variant<caf::expected<tokens_with_logprobs>, caf::expected<signed_url>>
    result;
};

/// The part of a dispatcher that CAF callbacks hold: a queue and a weak link
/// back. Holds no Python object, so it may die on any thread.
class sink : public std::enable_shared_from_this<sink> {
public:
  explicit sink(std::weak_ptr<dispatcher> owner) : owner_(std::move(owner)) {
  }

  /// Any thread. Queues `c`; the first item of a batch posts the sink to the
  /// notifier.
  void push(completion c);

  /// The loop's thread. Takes the batch and re-arms the wake-up.
  std::vector<completion> take();

  /// Drops everything from now on (the loop is gone).
  void close();

  /// The dispatcher, if alive. Call and drop the result with the GIL held
  /// (the dispatcher owns Python objects).
  std::shared_ptr<dispatcher> owner() const {
    return owner_.lock();
  }

private:
  std::weak_ptr<dispatcher> owner_;
  std::mutex mtx_;
  std::vector<completion> items_;
  bool scheduled_ = false;
  bool closed_ = false;
};

/// The one thread that wakes event loops. Started on first use.
class notifier {
public:
  static notifier& instance();

  /// Any thread, no GIL needed.
  void post(std::shared_ptr<sink> s);

  /// Stops and joins the thread. Call without holding the GIL (the thread
  /// may be waiting for it). Idempotent; post() after stop() drops.
  void stop();

  /// Starts the thread if needed (GIL held: the thread registers itself
  /// with the interpreter).
  void ensure_started();

private:
  void run();

  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<sink>> queue_;
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

/// Python values the dispatcher builds results and errors with (set once by
/// the package at import).
struct python_types {
  /// callable(tokens, maybe_logprobs, stop_reason, usage)
  pyb::object tokens_with_logprobs;
  /// callable(input_tokens, cached_tokens, output_tokens, reasoning_tokens)
  pyb::object usage;
  pyb::object error_factory;         ///< callable(kind, message, field, status, body)
};

/// Set by _native._init; leaked on purpose (no Python calls at static
/// destruction time).
python_types& types();

/// The result object of a sample (types().tokens_with_logprobs; GIL held).
pyb::object to_python(tokens_with_logprobs& x);

/// Builds the Python exception for `err` (GIL held).
pyb::object make_exception(const caf::error& err);

/// Raises `err` as its Python exception class (GIL held).
[[noreturn]] void raise_error(const caf::error& err);

/// Per event loop: the futures of calls in flight and their sink. Lives in a
/// shared_ptr owned by its Python wrapper; touched only with the GIL held,
/// the Python parts only on the loop's thread.
class dispatcher : public std::enable_shared_from_this<dispatcher> {
public:
  static std::shared_ptr<dispatcher> make(pyb::object loop);

  ~dispatcher();

  /// A new future on the loop and the id its completion will carry.
  std::pair<pyb::object, uint64_t> open_call(pyb::handle loop);

  /// A callback for CAF that completes call `id` through the sink, exactly
  /// once (actors/bridge.hpp, once_callback).
  template <class T>
  once_callback<T> callback(uint64_t id) {
    return once_callback<T>(
      [s = sink_, id](caf::expected<T> res) { s->push(completion{id, std::move(res)}); });
  }

  /// Forgets call `id` (it was never sent).
  void abandon(uint64_t id) {
    pending_.erase(id);
  }

  /// A fresh Idempotency-Key (UUID).
  std::string new_key();

  /// Notifier thread, GIL held: asks the loop to run drain().
  void wake();

  /// The loop's thread: resolves the futures of every completion queued.
  void drain();

  size_t pending() const {
    return pending_.size();
  }

private:
  explicit dispatcher(pyb::object loop_ref) : loop_ref_(std::move(loop_ref)) {
  }

  void deliver(pyb::handle fut, completion& c);

  pyb::object loop_ref_;  ///< weakref.ref(loop): a dispatcher never keeps a loop alive
  pyb::object drain_fn_;  ///< cpp_function holding a weak_ptr to this
  std::shared_ptr<sink> sink_;
  std::unordered_map<uint64_t, pyb::object> pending_;
  uint64_t next_ = 0;
  // Seeded once from the OS; random_generator (pure) makes a getrandom
  // syscall per key.
  boost::uuids::random_generator_mt19937 uuids_;
};

} // namespace sail::py
