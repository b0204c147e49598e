// sail_tinker._native.Emulator: the embedded Sail + Tinker emulator
// (emulator/emulator.hpp) for tests and examples. Waits release the GIL and
// are woken by the emulator's counter updates (server::wait_until).
#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "convert.hpp"
#include "delivery.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"

namespace sail::py {

namespace {

namespace emu = sail::emulator;

[[noreturn]] void bad(const std::string& field, const std::string& message) {
  raise_error(invalid_argument(field, message));
}

emu::fault_kind fault_of(const std::string& name) {
  for (size_t i = 0; i < emu::fault_kind_count; ++i)
    if (name == emu::to_string(static_cast<emu::fault_kind>(i)))
      return static_cast<emu::fault_kind>(i);
  bad("faults", "unknown fault kind '" + name + "'");
}

template <class Duration>
Duration seconds_as(pyb::handle v, const std::string& field) {
  return std::chrono::duration_cast<Duration>(to_timespan(v, field, true));
}

/// {"priority": {"queued": s, "per_token": s}, ...}; "all" sets every window
/// (named windows given too still win).
emu::latency_model to_latency(const pyb::dict& d, emu::latency_model base) {
  auto apply = [](emu::window_latency& w, const pyb::dict& wd, const std::string& name) {
    for (auto x : wd) {
      auto k = x.first.cast<std::string>();
      if (k == "queued")
        w.queued = seconds_as<std::chrono::microseconds>(x.second, "latency." + name + ".queued");
      else if (k == "per_token")
        w.per_token
          = seconds_as<std::chrono::microseconds>(x.second, "latency." + name + ".per_token");
      else if (k == "p99_ratio")
        continue;  // with "median" below
      else if (k == "median") {
        double ratio = wd.contains("p99_ratio") ? wd["p99_ratio"].cast<double>() : 1.0;
        if (!(ratio >= 1.0 && ratio <= 1000.0))
          bad("latency." + name + ".p99_ratio", "must be within 1..1000");
        w.spread = emu::latency_spread::log_normal_p99(
          seconds_as<std::chrono::microseconds>(x.second, "latency." + name + ".median"), ratio);
      } else
        bad("latency." + name + "." + k,
            "unknown option (queued, per_token, median, p99_ratio)");
    }
  };
  // {"profile": name, "scale": x}: a named profile, then the windows given.
  if (d.contains("profile")) {
    double scale = d.contains("scale") ? d["scale"].cast<double>() : 1.0;
    auto name = d["profile"].cast<std::string>();
    if (!(scale > 0.0 && scale <= 1000.0))
      bad("latency.scale", "must be within (0, 1000]");
    auto model = emu::latency_profile(name, scale);
    if (!model)
      bad("latency.profile", "unknown profile '" + name + "' (measured, targets, heavy-tail)");
    base = *model;
  }
  if (d.contains("all"))
    for (auto* w : base.all())
      apply(*w, d["all"].cast<pyb::dict>(), "all");
  const auto& known = emu::known_windows();
  for (auto kv : d) {
    auto name = kv.first.cast<std::string>();
    if (name == "all" || name == "profile" || name == "scale")
      continue;
    if (std::find(known.begin(), known.end(), name) == known.end())
      bad("latency." + name, "not a window the emulator knows");
    apply(base.of(name), kv.second.cast<pyb::dict>(), name);
  }
  return base;
}

emu::fault_settings to_faults(const pyb::dict& d) {
  emu::fault_settings f;
  for (auto kv : d) {
    auto k = kv.first.cast<std::string>();
    if (k == "probability") {
      for (auto p : kv.second.cast<pyb::dict>())
        f.set(fault_of(p.first.cast<std::string>()), p.second.cast<double>());
    } else if (k == "scripted") {
      for (auto x : kv.second)
        f.scripted.push_back(fault_of(x.cast<std::string>()));
    } else if (k == "routes") {
      uint8_t mask = 0;
      for (auto x : kv.second) {
        auto r = x.cast<std::string>();
        mask |= r == "create"   ? emu::route_create
                : r == "poll"   ? emu::route_poll
                : r == "tinker" ? emu::route_tinker
                                : (bad("faults.routes", "routes are create, poll, tinker"), 0);
      }
      f.routes = mask;
    } else if (k == "seed") {
      f.seed = kv.second.cast<uint64_t>();
    } else if (k == "after_accept_fraction") {
      f.after_accept_fraction = kv.second.cast<double>();
    } else if (k == "retry_after") {
      f.retry_after = seconds_as<std::chrono::seconds>(kv.second, "faults.retry_after");
    } else if (k == "slow_delay") {
      f.slow_delay = seconds_as<std::chrono::milliseconds>(kv.second, "faults.slow_delay");
    } else {
      bad("faults." + k, "unknown option");
    }
  }
  return f;
}

emu::options to_options(const pyb::dict& d) {
  emu::options o;
  o.threads = 2;
  for (auto kv : d) {
    auto k = kv.first.cast<std::string>();
    auto v = kv.second;
    if (k == "host")
      o.host = v.cast<std::string>();
    else if (k == "port")
      o.port = v.cast<uint16_t>();
    else if (k == "api_key")
      o.sail_api_key = v.cast<std::string>();
    else if (k == "tinker_api_key")
      o.tinker_api_key = v.cast<std::string>();
    else if (k == "threads")
      o.threads = std::max<size_t>(1, v.cast<size_t>());
    else if (k == "seed")
      o.seed = v.cast<uint64_t>();
    else if (k == "latency")
      o.latency = to_latency(v.cast<pyb::dict>(), o.latency);
    else if (k == "faults")
      o.faults = to_faults(v.cast<pyb::dict>());
    else if (k == "known_loras")
      o.known_loras = v.cast<std::set<std::string>>();
    else if (k == "known_checkpoints")
      o.known_checkpoints = v.cast<std::set<std::string>>();
    else if (k == "default_max_output_tokens")
      o.default_max_output_tokens = v.cast<int64_t>();
    else if (k == "prompt_cache_min_tokens")
      o.prompt_cache_min_tokens = v.cast<int64_t>();
    else if (k == "archive")
      o.archive = v.cast<std::string>() == "json" ? emu::archive_mode::json
                                                  : emu::archive_mode::redirect;
    else if (k == "still_building_calls")
      o.still_building_calls = v.cast<int>();
    else if (k == "archive_url_ttl")
      o.archive_url_ttl = seconds_as<std::chrono::milliseconds>(v, "archive_url_ttl");
    else if (k == "record_arrivals")
      o.record_arrivals = v.cast<bool>();
    else if (k == "request_log_capacity")
      o.request_log_capacity = v.cast<size_t>();
    else if (k == "vocabulary")
      o.vocabulary = v.cast<std::string>() == "openapi" ? emu::status_vocabulary::openapi
                                                        : emu::status_vocabulary::guides;
    else if (k == "model_windows")
      o.model_windows = v.cast<std::map<std::string, std::set<std::string>>>();
    else if (k == "wire_variants")
      for (auto& name : v.cast<std::vector<std::string>>()) {
        auto x = emu::parse_wire_variant(name);
        if (!x)
          bad("wire_variants", "expected " + emu::wire_variant_list(" | ") + ", got '" + name + "'");
        o.wire_variants.insert(*x);
      }
    else
      bad(k, "unknown Emulator option '" + k + "'");
  }
  return o;
}

uint64_t route_total(const emu::stats& st, const std::string& route) {
  auto i = st.requests.find(route);
  if (i == st.requests.end())
    return 0;
  uint64_t n = 0;
  for (auto& [status, count] : i->second)
    n += count;
  return n;
}

/// The counters tests wait on, by name.
uint64_t counter(const emu::stats& st, const std::string& name, const std::string& key) {
  if (name == "posts")
    return route_total(st, "POST /v1/responses");
  if (name == "polls")
    return route_total(st, "GET /v1/responses/{id}");
  if (name == "inference_runs")
    return st.inference_runs_total;
  if (name == "responses")
    return st.responses;
  if (name == "posts_of") {
    auto i = st.arrivals.find(key);
    return i == st.arrivals.end() ? 0 : i->second.size();
  }
  if (name == "polls_of") {
    auto i = st.poll_arrivals.find(key);
    return i == st.poll_arrivals.end() ? 0 : i->second.size();
  }
  if (name == "tinker_calls") {
    uint64_t n = 0;
    for (auto& [ckpt, calls] : st.tinker_calls)
      n += calls.size();
    return n;
  }
  return 0;
}

bool known_counter(const std::string& name) {
  for (auto* n : {"posts", "polls", "inference_runs", "responses", "posts_of", "polls_of",
                  "tinker_calls"})
    if (name == n)
      return true;
  return false;
}

pyb::dict to_dict(const emu::stats& st) {
  pyb::dict d;
  pyb::dict requests;
  for (auto& [route, by_status] : st.requests) {
    pyb::dict x;
    for (auto& [status, count] : by_status)
      x[pyb::int_(status)] = count;
    requests[pyb::str(route)] = x;
  }
  d["requests"] = requests;
  d["connections_accepted"] = st.connections_accepted;
  d["inference_runs"] = st.inference_runs;
  d["inference_runs_total"] = st.inference_runs_total;
  d["inference_runs_without_key"] = st.inference_runs_without_key;
  d["max_runs_per_key"] = st.max_runs_per_key;
  d["billed_input_tokens"] = st.billed_input_tokens;
  d["billed_cached_tokens"] = st.billed_cached_tokens;
  d["billed_output_tokens"] = st.billed_output_tokens;
  d["faults"] = st.faults;
  pyb::dict posts;
  for (auto& [key, xs] : st.arrivals)
    posts[pyb::str(key)] = xs.size();
  d["posts_per_key"] = posts;
  pyb::dict polls;
  for (auto& [id, xs] : st.poll_arrivals)
    polls[pyb::str(id)] = xs.size();
  d["polls_per_response"] = polls;
  d["tinker_calls"] = st.tinker_calls;
  d["responses"] = st.responses;
  d["prompt_cache_keys"] = st.prompt_cache_keys;
  d["expired_signed_urls"] = st.expired_signed_urls;
  pyb::dict webhooks;
  webhooks["attempts"] = st.webhooks.attempts;
  webhooks["delivered"] = st.webhooks.delivered;
  webhooks["failed"] = st.webhooks.failed;
  webhooks["ignored_invalid"] = st.webhooks.ignored_invalid;
  d["webhooks"] = webhooks;
  return d;
}

/// Owns the server; stop() (or destruction) joins its threads.
struct emulator_ref {
  std::unique_ptr<emu::server> server;

  emu::server& get() {
    if (!server)
      raise_error(make_error(errc::not_configured, "the emulator is stopped"));
    return *server;
  }
};

} // namespace

void bind_emulator(pyb::module_& m) {
  pyb::class_<emulator_ref>(m, "Emulator")
    .def(pyb::init([](const pyb::dict& options) {
           auto opts = to_options(options);
           caf::expected<std::unique_ptr<emu::server>> s{nullptr};
           {
             pyb::gil_scoped_release nogil;
             s = emu::server::make(std::move(opts));
           }
           if (!s)
             raise_error(s.error());
           return emulator_ref{std::move(*s)};
         }),
         pyb::arg("options"))
    .def_property_readonly("base_url", [](emulator_ref& e) { return e.get().base_url(); })
    .def_property_readonly("port", [](emulator_ref& e) { return e.get().port(); })
    .def_property_readonly("api_key",
                           [](emulator_ref& e) { return e.get().config().sail_api_key; })
    .def_property_readonly("tinker_api_key",
                           [](emulator_ref& e) { return e.get().config().tinker_api_key; })
    .def_property_readonly("seed", [](emulator_ref& e) { return e.get().config().seed; })
    .def_property_readonly("running", [](emulator_ref& e) { return e.server != nullptr; })
    .def("stats", [](emulator_ref& e) { return to_dict(e.get().snapshot()); })
    .def(
      "counter",
      [](emulator_ref& e, const std::string& name, const std::string& key) {
        if (!known_counter(name))
          bad("counter", "unknown counter '" + name + "'");
        return counter(e.get().snapshot(), name, key);
      },
      pyb::arg("name"), pyb::arg("key") = "")
    .def(
      "wait_until",
      [](emulator_ref& e, const std::string& name, uint64_t at_least, pyb::handle timeout,
         const std::string& key) {
        if (!known_counter(name))
          bad("counter", "unknown counter '" + name + "'");
        auto t = std::chrono::duration_cast<std::chrono::milliseconds>(
          to_timespan(timeout, "timeout", true));
        auto& s = e.get();
        pyb::gil_scoped_release nogil;
        return s.wait_until(
          [&](const emu::stats& st) { return counter(st, name, key) >= at_least; }, t);
      },
      pyb::arg("name"), pyb::arg("at_least"), pyb::arg("timeout"), pyb::arg("key") = "",
      "Blocks (GIL released) until the counter reaches at_least; False on timeout.")
    .def("set_latency",
         [](emulator_ref& e, const pyb::dict& d) {
           e.get().set_latency(to_latency(d, emu::latency_model{}));
         })
    .def("set_faults",
         [](emulator_ref& e, const pyb::dict& d) { e.get().set_faults(to_faults(d)); })
    .def("add_known_lora",
         [](emulator_ref& e, const std::string& name) { e.get().add_known_lora(name); })
    .def("set_still_building_calls",
         [](emulator_ref& e, int n) { e.get().set_still_building_calls(n); })
    .def("checkpoint_ttl",
         [](emulator_ref& e, const std::string& ckpt) { return e.get().checkpoint_ttl(ckpt); })
    .def(
      "expected_sample",
      [](emulator_ref& e, pyb::handle prompt, const std::string& model, double temperature,
         double top_p, int64_t max_output_tokens, pyb::handle stop, std::optional<int64_t> seed,
         const std::string& key) {
        emu::sample_params p;
        p.prompt = to_prompt(prompt).tokens;
        p.model = model;
        p.temperature = temperature;
        p.top_p = top_p;
        p.max_output_tokens = max_output_tokens;
        p.seed = seed;
        p.idempotency_key = key;
        auto s = to_stop(stop);
        p.stop_token_ids = s.token_ids;
        p.stop_strings = s.strings;
        auto r = emu::sample(p, e.get().config().seed);
        pyb::dict d;
        d["token_ids"] = r.token_ids;
        d["logprobs"] = r.logprobs;
        d["text"] = r.text;
        d["stop_reason"] = r.stop_reason;
        return d;
      },
      pyb::arg("prompt"), pyb::arg("model"), pyb::arg("temperature") = 1.0,
      pyb::arg("top_p") = 1.0, pyb::arg("max_output_tokens") = 16,
      pyb::arg("stop") = pyb::none(), pyb::arg("seed") = pyb::none(), pyb::arg("key") = "",
      "What the toy model answers for these request fields (a pure function).")
    .def("stop", [](emulator_ref& e) {
      auto s = std::move(e.server);
      pyb::gil_scoped_release nogil;
      s.reset();  // ~server stops and joins
    });
}

} // namespace sail::py
