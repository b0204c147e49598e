#include "delivery.hpp"

#include <boost/uuid/uuid_io.hpp>

#include "sail_tinker/messages/error.hpp"

namespace sail::py {

// -- sink -----------------------------------------------------------------------------

void sink::push(completion c) {
  bool first = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return;
    items_.push_back(std::move(c));
    if (!scheduled_)
      scheduled_ = first = true;
  }
  if (first)
    notifier::instance().post(shared_from_this());
}

std::vector<completion> sink::take() {
  std::vector<completion> out;
  std::lock_guard<std::mutex> guard{mtx_};
  out.swap(items_);
  scheduled_ = false;
  return out;
}

void sink::close() {
  std::lock_guard<std::mutex> guard{mtx_};
  closed_ = true;
  items_.clear();
}

// -- notifier -------------------------------------------------------------------------

notifier& notifier::instance() {
  // Leaked: its thread is joined by stop() at interpreter exit, never by a
  // static destructor.
  static auto* n = new notifier;
  return *n;
}

void notifier::ensure_started() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!thread_.joinable() && !stopped_)
    thread_ = std::thread{[this] { run(); }};
}

void notifier::post(std::shared_ptr<sink> s) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_)
      return;
    queue_.push_back(std::move(s));
  }
  cv_.notify_one();
}

void notifier::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
    stopped_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable())
    thread_.join();
}

void notifier::run() {
  // A thread state of its own for the thread's whole life; the GIL is held
  // only while waking loops.
  auto gil = PyGILState_Ensure();
  auto* ts = PyEval_SaveThread();
  std::vector<std::shared_ptr<sink>> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock{mtx_};
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        break;
      batch.swap(queue_);
    }
    PyEval_RestoreThread(ts);
    for (auto& s : batch)
      if (auto d = s->owner())
        d->wake();  // `d` may be the last reference: dropped with the GIL
    batch.clear();
    ts = PyEval_SaveThread();
  }
  PyEval_RestoreThread(ts);
  PyGILState_Release(gil);
}

// -- Python types and errors ------------------------------------------------------------

python_types& types() {
  static auto* t = new python_types;
  return *t;
}

pyb::object make_exception(const caf::error& err) {
  auto code = code_of(err);
  const auto* info = info_of(err);
  std::string kind = code ? to_string(*code) : "other";
  std::string message = info != nullptr ? info->message : render(err);
  std::string field = info != nullptr ? info->field : std::string{};
  int status = info != nullptr ? info->http_status : 0;
  std::string body = info != nullptr ? info->body : std::string{};
  // Bodies are redacted by make_error; they may still hold bytes that are not
  // UTF-8 (a proxy's error page): decode with replacement, never fail.
  auto text = [](const std::string& s) {
    return pyb::reinterpret_steal<pyb::object>(
      PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace"));
  };
  return types().error_factory(kind, text(message), text(field), status, text(body));
}

void raise_error(const caf::error& err) {
  auto exc = make_exception(err);
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw pyb::error_already_set();
}

pyb::object to_python(tokens_with_logprobs& x) {
  pyb::list tokens(x.tokens.size());
  for (size_t i = 0; i < x.tokens.size(); ++i)
    PyList_SET_ITEM(tokens.ptr(), static_cast<Py_ssize_t>(i), PyLong_FromLong(x.tokens[i]));
  pyb::object lps = pyb::none();
  if (x.maybe_logprobs) {
    auto& xs = *x.maybe_logprobs;
    pyb::list l(xs.size());
    for (size_t i = 0; i < xs.size(); ++i)
      PyList_SET_ITEM(l.ptr(), static_cast<Py_ssize_t>(i), PyFloat_FromDouble(xs[i]));
    lps = std::move(l);
  }
  pyb::object usage = pyb::none();
  if (x.usage)
    usage = types().usage(x.usage->input_tokens, x.usage->cached_tokens,
                          x.usage->output_tokens, x.usage->reasoning_tokens);
  return types().tokens_with_logprobs(tokens, lps, pyb::str(x.stop_reason), usage);
}

// -- dispatcher ------------------------------------------------------------------------

namespace {

/// The future's outcome: (true, value) or (false, exception).
std::pair<bool, pyb::object> outcome(caf::expected<tokens_with_logprobs>& r) {
  if (!r)
    return {false, make_exception(r.error())};
  return {true, to_python(*r)};
}

std::pair<bool, pyb::object> outcome(caf::expected<signed_url>& r) {
  if (!r)
    return {false, make_exception(r.error())};
  return {true, pyb::str(r->url)};
}

} // namespace

std::shared_ptr<dispatcher> dispatcher::make(pyb::object loop) {
  auto ref = pyb::module_::import("weakref").attr("ref")(loop);
  std::shared_ptr<dispatcher> d{new dispatcher(std::move(ref))};
  d->sink_ = std::make_shared<sink>(d);
  std::weak_ptr<dispatcher> weak = d;
  d->drain_fn_ = pyb::cpp_function([weak] {
    if (auto self = weak.lock())
      self->drain();
  });
  notifier::instance().ensure_started();
  return d;
}

dispatcher::~dispatcher() {
  sink_->close();
}

std::pair<pyb::object, uint64_t> dispatcher::open_call(pyb::handle loop) {
  auto fut = loop.attr("create_future")();
  auto id = ++next_;
  pending_.emplace(id, fut);
  return {std::move(fut), id};
}

std::string dispatcher::new_key() {
  return boost::uuids::to_string(uuids_());
}

void dispatcher::wake() {
  auto loop = loop_ref_();
  bool gone = loop.is_none();
  if (!gone) {
    try {
      loop.attr("call_soon_threadsafe")(drain_fn_);
    } catch (pyb::error_already_set&) {
      // RuntimeError: the loop is closed. Nobody will await these futures.
      gone = true;
    }
  }
  if (gone) {
    sink_->close();
    pending_.clear();
  }
}

void dispatcher::drain() {
  auto batch = sink_->take();
  for (auto& c : batch) {
    auto i = pending_.find(c.id);
    if (i == pending_.end())
      continue;
    auto fut = std::move(i->second);
    pending_.erase(i);
    deliver(fut, c);
  }
}

void dispatcher::deliver(pyb::handle fut, completion& c) {
  try {
    // A cancelled future (its task was cancelled) takes no result.
    if (fut.attr("done")().cast<bool>())
      return;
    auto [ok, value] = std::visit([](auto& r) { return outcome(r); }, c.result);
    fut.attr(ok ? "set_result" : "set_exception")(value);
  } catch (pyb::error_already_set& e) {
    // The result could not be made into a Python object (e.g. a result
    // class of another shape): the awaiting task gets that error rather than
    // waiting forever.
    try {
      if (!fut.attr("done")().cast<bool>()) {
        fut.attr("set_exception")(e.value());
        return;
      }
    } catch (pyb::error_already_set& again) {
      again.discard_as_unraisable("sail_tinker: delivering an error");
    }
    e.discard_as_unraisable("sail_tinker: delivering a result");
  }
}

} // namespace sail::py
