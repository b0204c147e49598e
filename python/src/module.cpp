// sail_tinker._native: the pybind11 module. Thin: each function converts its
// arguments (convert.hpp), calls the host (host.hpp) or a dispatcher
// (delivery.hpp) with the GIL released where C++ may block, and converts the
// result. The user-facing API is the Python package around it.
#include <mutex>
#include <set>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <caf/send.hpp>

#include "sail_tinker/actors/bridge.hpp"
#include "convert.hpp"
#include "delivery.hpp"
#include "host.hpp"
#include "sail_tinker/actors/completer.hpp"
#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/actors/step_sampler.hpp"
#include "sail_tinker/rollout/durable_run.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

namespace pyb = pybind11;
using namespace sail;
using namespace sail::py;

namespace sail::py {
void bind_emulator(pyb::module_& m);
void bind_doctor(pyb::module_& m);
void bind_budget(pyb::module_& m);
} // namespace sail::py

namespace {

/// Python's handle on a completer (local or cluster).
struct completer_ref {
  std::shared_ptr<completer_slot> slot;

  completer_ref(std::shared_ptr<completer_slot> s) : slot(std::move(s)) {
  }
  completer_ref(const completer_ref&) = delete;
  completer_ref& operator=(const completer_ref&) = delete;
  completer_ref(completer_ref&&) = default;

  ~completer_ref() {
    if (slot)
      slot->abandon();
  }

  completer_slot::target target() const {
    auto t = slot->get();
    if (!t)
      raise_error(make_error(errc::cancelled, "the completer is closed"));
    return *t;
  }
};

struct resolver_ref {
  std::shared_ptr<resolver_slot> slot;
};

/// Python's handle on a durable run (sail_tinker.Run).
struct run_ref {
  rollout::run_handle run;
};

template <class T>
T value_or_raise(caf::expected<T>&& x) {
  if (!x)
    raise_error(x.error());
  return std::move(*x);
}

/// The sample request of one call, validated now so that a bad input raises
/// at the call site (ValueError / TypeError) rather than from the await.
sample_request make_request(pyb::handle prompt, pyb::handle stop, pyb::handle max_tokens) {
  sample_request req;
  req.prompt = to_prompt(prompt);
  req.stop = to_stop(stop);
  if (!max_tokens.is_none()) {
    if (PyBool_Check(max_tokens.ptr()) || !PyLong_Check(max_tokens.ptr()))
      throw pyb::type_error("max_tokens must be an int or None");
    int overflow = 0;
    auto v = PyLong_AsLongLongAndOverflow(max_tokens.ptr(), &overflow);
    if (overflow != 0)
      raise_error(invalid_argument("max_tokens", "per-call max_tokens is out of range"));
    req.max_tokens = v;
  }
  return req;
}

pyb::tuple dispatch_sample(dispatcher& d, pyb::handle loop, const completer_ref& c,
                           pyb::handle prompt, pyb::handle stop, pyb::handle max_tokens) {
  auto req = make_request(prompt, stop, max_tokens);
  req.key = d.new_key();
  if (auto err = validate(req))
    raise_error(err);
  auto t = c.target();
  auto key = req.key;
  auto [fut, id] = d.open_call(loop);
  caf::anon_send(t.bridge, atom::sample_v, std::move(t.completer), std::move(req),
                 no_call_timeout, d.callback<tokens_with_logprobs>(id));
  return pyb::make_tuple(std::move(fut), pyb::str(key));
}

pyb::tuple dispatch_group(dispatcher& d, pyb::handle loop, const completer_ref& c,
                          pyb::handle prompt, pyb::handle n_obj, pyb::handle stop,
                          pyb::handle max_tokens) {
  if (PyBool_Check(n_obj.ptr()) || !PyLong_Check(n_obj.ptr()))
    throw pyb::type_error("n must be an int");
  int overflow = 0;
  auto n = PyLong_AsLongLongAndOverflow(n_obj.ptr(), &overflow);
  // The completer's bound (a node may have its own; it answers typed).
  const auto max_n = static_cast<long long>(completer_options{}.max_group_size);
  if (overflow != 0 || n < 1 || n > max_n)
    raise_error(invalid_argument("n", "group size must be within 1.." + std::to_string(max_n)));
  auto req = make_request(prompt, stop, max_tokens);
  // Member keys are key + "." + i; the group id is what cancel names, and
  // the members' prompt_cache_key, as the completer's own sample_group.
  auto key = d.new_key();
  req.group_id = d.new_key();
  req.prompt_cache_key = req.group_id;
  req.key = key + ".0";
  if (auto err = validate(req))
    raise_error(err);
  auto t = c.target();
  auto group = req.group_id;
  // One sample per member, each with its own future: a failed member never
  // cancels its siblings (they are billed anyway), whatever group policy the
  // completer or a cluster's nodes have.
  pyb::list futures;
  for (long long i = 0; i < n; ++i) {
    auto member = i + 1 < n ? req : std::move(req);
    member.key = key + "." + std::to_string(i);
    auto [fut, id] = d.open_call(loop);
    caf::anon_send(t.bridge, atom::sample_v, t.completer, std::move(member), no_call_timeout,
                   d.callback<tokens_with_logprobs>(id));
    futures.append(std::move(fut));
  }
  return pyb::make_tuple(std::move(futures), pyb::str(group));
}

pyb::object dispatch_resolve(dispatcher& d, pyb::handle loop, const resolver_ref& r,
                             const std::string& path, pyb::handle ttl) {
  auto parsed = parse_tinker_path(path);
  if (!parsed)
    raise_error(parsed.error());
  resolve_request req{std::move(*parsed), std::nullopt};
  if (!ttl.is_none()) {
    if (PyBool_Check(ttl.ptr()) || !PyLong_Check(ttl.ptr()))
      throw pyb::type_error("ttl_seconds must be an int or None");
    int overflow = 0;
    auto v = PyLong_AsLongLongAndOverflow(ttl.ptr(), &overflow);
    if (overflow != 0 || v <= 0)
      raise_error(invalid_argument("ttl_seconds", "ttl_seconds must be > 0"));
    req.ttl_seconds = v;
  }
  auto t = r.slot->get();
  if (!t)
    raise_error(make_error(errc::cancelled, "the resolver is closed"));
  auto [fut, id] = d.open_call(loop);
  // Bounded: the resolver bounds its own REST calls; this is the backstop.
  caf::anon_send(t->bridge, atom::resolve_v, std::move(t->resolver), std::move(req),
                 caf::duration{t->timeout}, d.callback<signed_url>(id));
  return std::move(fut);
}

completer_ref local_completer(const pyb::dict& config, const pyb::dict& target) {
  auto cfg = to_config(config);
  std::string key;
  auto opts = to_runtime_options(target, key);
  // The seed's ValueError cases first, before anything starts.
  if (auto err = validate(cfg, opts.models))
    raise_error(err);
  caf::expected<std::shared_ptr<completer_slot>> slot{nullptr};
  {
    pyb::gil_scoped_release nogil;
    slot = host::instance().local_completer(system_settings{}, key, std::move(opts),
                                            std::move(cfg));
  }
  return completer_ref{value_or_raise(std::move(slot))};
}

completer_ref cluster_completer(const pyb::dict& config, const pyb::dict& target) {
  auto cfg = to_config(config);
  // Structural rules only: each node judges models and windows with its own
  // table (an empty table knows no model, so it allows any window).
  if (auto err = validate(cfg, model_table{}))
    raise_error(err);
  system_settings ss;
  auto opts = to_cluster_options(target, std::move(cfg), ss);
  caf::expected<std::shared_ptr<completer_slot>> slot{nullptr};
  {
    pyb::gil_scoped_release nogil;
    slot = host::instance().cluster_completer(ss, std::move(opts));
  }
  return completer_ref{value_or_raise(std::move(slot))};
}

run_ref open_run(const std::string& path, pyb::handle run_id) {
  std::optional<std::string> id;
  if (!run_id.is_none()) {
    if (!pyb::isinstance<pyb::str>(run_id))
      throw pyb::type_error("run_id must be a str or None");
    id = run_id.cast<std::string>();
  }
  caf::expected<rollout::run_handle> run{nullptr};
  {
    pyb::gil_scoped_release nogil;
    run = rollout::durable_run::open(path, std::move(id));
  }
  return run_ref{value_or_raise(std::move(run))};
}

void make_durable(const completer_ref& c, const run_ref& r, const pyb::dict& config,
                  const std::string& step, pyb::handle version) {
  durable_options opts;
  opts.run = r.run;
  opts.step = step;
  if (!version.is_none())
    opts.version = version.cast<std::string>();
  auto cfg = to_config(config);
  caf::error err;
  {
    pyb::gil_scoped_release nogil;
    err = host::instance().make_durable(*c.slot, std::move(cfg), std::move(opts));
  }
  if (err)
    raise_error(err);
}

/// Python's handle on a step sampler (sail_tinker.GroupSampler). The C++
/// sampler opens on the first next_step / attach, in the actor system of
/// the completer given (a sampler needs one before it can launch). Calls are
/// serialized by the package (one worker thread per sampler); stats() may
/// come from any thread.
struct sampler_ref {
  rollout::run_handle run;
  std::vector<group_prompt> prompts;
  step_sampler_options opts;
  mutable std::mutex mtx;
  std::shared_ptr<step_sampler> sampler;
  bool closed = false;

  /// The open sampler (opened now in `sys` if it is not yet). GIL released.
  caf::expected<std::shared_ptr<step_sampler>> open(caf::actor_system* sys) {
    std::lock_guard<std::mutex> guard{mtx};
    if (closed)
      return make_error(errc::cancelled, "the sampler is closed");
    if (sampler)
      return sampler;
    if (sys == nullptr)
      return make_error(errc::invalid_argument,
                        "the sampler has not started: call next_step or attach first");
    auto s = step_sampler::open(*sys, run, prompts, opts);
    if (!s)
      return std::move(s.error());
    sampler = std::shared_ptr<step_sampler>(std::move(*s));
    return sampler;
  }

  std::shared_ptr<step_sampler> current() const {
    std::lock_guard<std::mutex> guard{mtx};
    return sampler;
  }
};

std::unique_ptr<sampler_ref> open_sampler(const run_ref& r, const pyb::list& prompts,
                                          const pyb::dict& options) {
  auto out = std::make_unique<sampler_ref>();
  out->run = r.run;
  auto get = [&](const char* name, auto& field) {
    if (options.contains(name))
      field = options[name].cast<std::decay_t<decltype(field)>>();
  };
  get("group_size", out->opts.group_size);
  get("groups_per_step", out->opts.groups_per_step);
  get("overprovision", out->opts.overprovision);
  get("max_staleness", out->opts.max_staleness);
  get("max_refills", out->opts.max_refills);
  if (auto err = out->opts.validate(""))
    raise_error(err);
  if (prompts.size() == 0)
    raise_error(invalid_argument("prompts", "no prompt"));
  out->prompts.reserve(prompts.size());
  std::set<std::string> ids;
  for (auto x : prompts) {
    auto t = x.cast<pyb::tuple>();  // (id, prompt, stop, max_tokens), normalized by the package
    auto id = t[0].cast<std::string>();
    if (!ids.insert(id).second)
      raise_error(invalid_argument("prompts", "duplicate prompt id \"" + id + "\""));
    out->prompts.push_back(group_prompt{std::move(id), make_request(t[1], t[2], t[3])});
  }
  return out;
}

sampler_target make_target(const completer_ref& c, const pyb::dict& config,
                           pyb::handle version, caf::actor_system*& sys) {
  auto t = c.slot->plain();
  if (!t)
    raise_error(make_error(errc::cancelled, "the completer is closed"));
  sys = t->sys;
  sampler_target out{t->completer, to_config(config), {}, std::move(t->wire)};
  if (!version.is_none())
    out.version = version.cast<std::string>();
  return out;
}

pyb::dict group_to_python(sampled_group& g) {
  pyb::dict d;
  d["prompt_id"] = g.prompt_id;
  d["index"] = g.index;
  d["label"] = g.label;
  pyb::list members;
  for (auto& m : g.members)
    members.append(to_python(m));
  d["members"] = std::move(members);
  d["version"] = g.version;
  d["launched_step"] = g.launched_step;
  d["step"] = g.step;
  d["staleness"] = g.staleness;
  d["refills"] = g.refills;
  d["error"] = g.error ? make_exception(g.error) : pyb::none();
  return d;
}

pyb::dict batch_to_python(step_batch& b) {
  pyb::dict d;
  d["step"] = b.step;
  d["version"] = b.version;
  for (auto [name, xs] : {std::pair{"groups", &b.groups}, std::pair{"stale", &b.stale},
                          std::pair{"failed", &b.failed}}) {
    pyb::list l;
    for (auto& g : *xs)
      l.append(group_to_python(g));
    d[name] = std::move(l);
  }
  return d;
}

pyb::dict to_dict(const step_sampler_stats& s) {
  pyb::dict d;
  d["launched"] = s.launched;
  d["resumed"] = s.resumed;
  d["skipped"] = s.skipped;
  d["delivered"] = s.delivered;
  d["stale"] = s.stale;
  d["failed"] = s.failed;
  d["refills"] = s.refills;
  d["members_completed"] = s.members_completed;
  d["members_delivered"] = s.members_delivered;
  d["in_flight"] = s.in_flight;
  d["staleness_sum"] = s.staleness_sum;
  return d;
}

pyb::dict sampler_next_step(sampler_ref& r, const completer_ref& c, const pyb::dict& config,
                            pyb::handle version) {
  caf::actor_system* sys = nullptr;
  auto target = make_target(c, config, version, sys);
  caf::expected<step_batch> batch{step_batch{}};
  {
    pyb::gil_scoped_release nogil;
    auto s = r.open(sys);
    if (s)
      batch = (*s)->next_step(target);
    else
      batch = std::move(s.error());
  }
  auto b = value_or_raise(std::move(batch));
  return batch_to_python(b);
}

void sampler_attach(sampler_ref& r, const completer_ref& c, const pyb::dict& config,
                    pyb::handle version) {
  caf::actor_system* sys = nullptr;
  auto target = make_target(c, config, version, sys);
  caf::error err;
  {
    pyb::gil_scoped_release nogil;
    auto s = r.open(sys);
    if (s)
      (*s)->attach(target);
    else
      err = std::move(s.error());
  }
  if (err)
    raise_error(err);
}

pyb::object sampler_drain(sampler_ref& r) {
  auto s = r.current();
  if (!s)
    return pyb::none();  // never started: nothing launched in this process
  if (r.closed)
    raise_error(make_error(errc::cancelled, "the sampler is closed"));
  caf::expected<step_batch> batch{step_batch{}};
  {
    pyb::gil_scoped_release nogil;
    batch = s->drain();
  }
  auto b = value_or_raise(std::move(batch));
  return batch_to_python(b);
}

void sampler_close(sampler_ref& r) {
  caf::error err;
  {
    pyb::gil_scoped_release nogil;
    std::shared_ptr<step_sampler> s;
    {
      std::lock_guard<std::mutex> guard{r.mtx};
      if (r.closed)
        return;
      r.closed = true;
      s = r.sampler;  // kept for stats()
    }
    if (s)
      err = s->close();
  }
  if (err)
    raise_error(err);
}

resolver_ref make_resolver(const pyb::dict& target) {
  http_client_options http;
  auto opts = to_resolver_options(target, http);
  caf::expected<std::shared_ptr<resolver_slot>> slot{nullptr};
  {
    pyb::gil_scoped_release nogil;
    slot = host::instance().resolver(std::move(opts), std::move(http));
  }
  return resolver_ref{value_or_raise(std::move(slot))};
}

} // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "sail-tinker's C++ runtime for Python (use the sail_tinker package)";

  m.def(
    "_init",
    [](pyb::object tokens_with_logprobs, pyb::object usage, pyb::object error_factory) {
      auto& t = types();
      t.tokens_with_logprobs = std::move(tokens_with_logprobs);
      t.usage = std::move(usage);
      t.error_factory = std::move(error_factory);
    },
    "Sets the result and usage classes and the error factory (called once by the package).");

  pyb::class_<completer_ref>(m, "Completer")
    .def(
      "cancel",
      [](const completer_ref& c, const std::string& key_or_group) {
        if (auto t = c.slot->get())
          caf::anon_send(t->completer, atom::cancel_v, key_or_group);
      },
      "Cancels the sample with this Idempotency-Key or the group with this id.")
    .def(
      "stats",
      [](const completer_ref& c) {
        caf::expected<completer_stats> s{completer_stats{}};
        {
          pyb::gil_scoped_release nogil;
          s = host::instance().stats(*c.slot);
        }
        return to_dict(value_or_raise(std::move(s)));
      },
      "Counters: in_flight, completed, polls, failed_by_kind, retries_by_cause, webhooks, and guard "
      "(the circuit breaker and the retry budget).")
    .def(
      "nodes",
      [](const completer_ref& c) {
        std::vector<node_status> xs;
        {
          pyb::gil_scoped_release nogil;
          xs = host::instance().status(*c.slot);
        }
        pyb::list out;
        for (auto& x : xs)
          out.append(to_dict(x));
        return out;
      },
      "The cluster's view of its nodes (empty for a local completer).")
    .def(
      "wait_ready",
      [](const completer_ref& c, size_t n, pyb::handle timeout) {
        auto t = to_timespan(timeout, "timeout", true);
        pyb::gil_scoped_release nogil;
        return host::instance().wait_ready(*c.slot, n, t);
      },
      "Blocks until n nodes are ready (cluster mode); False on timeout.")
    .def(
      "close",
      [](const completer_ref& c) {
        pyb::gil_scoped_release nogil;
        host::instance().close(*c.slot);
      },
      "Ends the completer; its open samples fail with `cancelled`.")
    .def_property_readonly("closed", [](const completer_ref& c) { return !c.slot->get(); })
    .def_property_readonly("is_cluster",
                           [](const completer_ref& c) { return c.slot->is_cluster(); });

  pyb::class_<resolver_ref>(m, "Resolver");

  pyb::class_<run_ref>(m, "Run")
    .def(pyb::init(&open_run), pyb::arg("path"), pyb::arg("run_id") = pyb::none())
    .def_property_readonly("id", [](const run_ref& r) { return r.run->id(); })
    .def_property_readonly("path", [](const run_ref& r) { return r.run->path(); })
    .def_property_readonly("closed", [](const run_ref& r) { return r.run->closed(); })
    .def(
      "close",
      [](const run_ref& r) {
        caf::error err;
        {
          pyb::gil_scoped_release nogil;
          err = r.run->close();
        }
        if (err)
          raise_error(err);
      },
      "Commits what is recorded and closes the journal. Idempotent.")
    .def(
      "stats",
      [](const run_ref& r) {
        pyb::dict out;
        for (auto& [step, s] : r.run->stats()) {
          pyb::dict d;
          d["fresh"] = s.fresh;
          d["from_journal"] = s.from_journal;
          d["reattached"] = s.reattached;
          d["resent"] = s.resent;
          d["failed"] = s.failed;
          out[pyb::str(step)] = std::move(d);
        }
        return out;
      },
      "Per step: fresh, from_journal, reattached, resent, failed.");

  pyb::class_<sampler_ref>(m, "StepSampler")
    .def(pyb::init(&open_sampler), pyb::arg("run"), pyb::arg("prompts"), pyb::arg("options"))
    .def("next_step", &sampler_next_step, pyb::arg("completer"), pyb::arg("config"),
         pyb::arg("version"), "Acknowledges the last batch and returns the next (blocks).")
    .def("attach", &sampler_attach, pyb::arg("completer"), pyb::arg("config"),
         pyb::arg("version"), "Makes a target known for resumed groups of its version.")
    .def("drain", &sampler_drain, "Waits for every open group; None if never started.")
    .def("close", &sampler_close, "Acknowledges the last batch. Idempotent.")
    .def(
      "release",
      [](sampler_ref& r) {
        pyb::gil_scoped_release nogil;
        std::shared_ptr<step_sampler> s;
        {
          std::lock_guard<std::mutex> guard{r.mtx};
          r.closed = true;
          s = std::move(r.sampler);
          r.sampler = nullptr;
        }
      },
      "Drops the C++ sampler without acknowledging anything (interpreter exit: before the "
      "actor systems stop).")
    .def(
      "stats",
      [](const sampler_ref& r) {
        auto s = r.current();
        return to_dict(s ? s->stats() : step_sampler_stats{});
      },
      "Counters: launched, resumed, skipped, delivered, stale, failed, refills, "
      "members_completed, members_delivered, in_flight, staleness_sum.")
    .def_property_readonly("started", [](const sampler_ref& r) { return r.current() != nullptr; })
    .def_property_readonly("closed", [](const sampler_ref& r) {
      std::lock_guard<std::mutex> guard{r.mtx};
      return r.closed;
    });

  pyb::class_<dispatcher, std::shared_ptr<dispatcher>>(m, "Dispatcher")
    .def(pyb::init([](pyb::object loop) { return dispatcher::make(std::move(loop)); }))
    .def("sample", &dispatch_sample,
         "(loop, completer, prompt, stop, max_tokens) -> (future, idempotency_key)")
    .def("sample_group", &dispatch_group,
         "(loop, completer, prompt, n, stop, max_tokens) -> (futures of the members, group_id)")
    .def("resolve", &dispatch_resolve, "(loop, resolver, tinker_path, ttl_seconds) -> future")
    .def_property_readonly("pending", &dispatcher::pending);

  m.def("stat_paths", &stat_paths,
        "The key path in Completer.stats() of every counter (messages/types.hpp's "
        "description): a test checks that each one is there.");
  m.def("own_stat_keys", &own_stat_keys,
        "The keys of a completer's own counters in Completer.stats() (the pool's are "
        "shared by the completers of a pool).");
  m.def("local_completer", &local_completer, pyb::arg("config"), pyb::arg("target"));
  m.def("cluster_completer", &cluster_completer, pyb::arg("config"), pyb::arg("target"));
  m.def("resolver", &make_resolver, pyb::arg("target"));
  m.def("make_durable", &make_durable, pyb::arg("completer"), pyb::arg("run"),
        pyb::arg("config"), pyb::arg("step"), pyb::arg("version"),
        "Puts a durable front (run, step, version label) before the completer.");
  m.def(
    "validate_config",
    [](const pyb::dict& config) {
      if (auto err = validate(to_config(config), model_table::builtin()))
        raise_error(err);
    },
    "Checks a configuration against the contract and the built-in model table.");
  m.def(
    "shutdown",
    [](bool final) {
      pyb::gil_scoped_release nogil;
      host::instance().shutdown(final);
      if (final)
        notifier::instance().stop();
    },
    pyb::arg("final") = false,
    "Stops every runtime, cluster and resolver; with final=True also the notifier "
    "thread (interpreter exit).");

  bind_emulator(m);
  bind_doctor(m);
  bind_budget(m);
}
