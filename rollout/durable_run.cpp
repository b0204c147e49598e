#include "sail_tinker/rollout/durable_run.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/keys.hpp"
#include "sail_tinker/rollout/run_config.hpp"
#include "sail_tinker/rollout/samples_file.hpp"

namespace sail::rollout {

namespace json = boost::json;

namespace {

/// The run row of a trainer run (the rollout run's holds its settings).
constexpr const char* trainer_config = R"({"kind":"trainer"})";

void append_sized(std::string& out, std::string_view x) {
  out += std::to_string(x.size());
  out += ':';
  out += x;
  out += '|';
}

} // namespace

std::string settings_ref(std::string_view settings) {
  return "#" + sha256_hex(settings).substr(0, 16);
}

caf::expected<tokens_with_logprobs> parse_result(std::string_view text) {
  auto bad = [] {
    return make_error(errc::io_error, "the journal holds an unreadable result", "journal");
  };
  json::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object())
    return bad();
  auto& o = v.get_object();
  auto* tokens = o.if_contains("tokens");
  auto* logprobs = o.if_contains("logprobs");
  auto* stop = o.if_contains("stop_reason");
  if (tokens == nullptr || !tokens->is_array() || logprobs == nullptr || stop == nullptr
      || !stop->is_string())
    return bad();
  tokens_with_logprobs out;
  out.tokens.reserve(tokens->get_array().size());
  for (auto& t : tokens->get_array()) {
    if (!t.is_int64())
      return bad();
    out.tokens.push_back(static_cast<int32_t>(t.get_int64()));
  }
  if (logprobs->is_array()) {
    std::vector<double> xs;
    xs.reserve(logprobs->get_array().size());
    for (auto& x : logprobs->get_array()) {
      if (x.is_double())
        xs.push_back(x.get_double());
      else if (x.is_int64())
        xs.push_back(static_cast<double>(x.get_int64()));
      else
        return bad();
    }
    out.maybe_logprobs = std::move(xs);
  } else if (!logprobs->is_null()) {
    return bad();
  }
  out.stop_reason = std::string{stop->get_string()};
  // The usage billed when it ran (none in a line from before usage existed).
  out.usage = parse_result_usage(text);
  return out;
}

std::string adapter_identity(const completer_config& cfg) {
  if (cfg.tinker_checkpoint)
    return *cfg.tinker_checkpoint;
  if (cfg.tinker_lora_name)
    return *cfg.tinker_lora_name;
  if (cfg.lora)
    return *cfg.lora;
  if (cfg.tinker_lora_signed_url) {
    // The signature lives in the query: it changes with every signing.
    auto& url = *cfg.tinker_lora_signed_url;
    return url.substr(0, std::min(url.find('?'), url.find('#')));
  }
  return {};
}

std::string call_settings(const completer_config& c, int64_t max_tokens) {
  json::object o;
  auto adapter = adapter_identity(c);
  o["adapter"] = adapter.empty() ? json::value(nullptr) : json::value(adapter);
  o["adapter_config"] = c.adapter_config ? json::value(*c.adapter_config) : json::value(nullptr);
  o["completion_window"] = c.completion_window;
  o["max_tokens"] = max_tokens;
  json::object md;
  for (auto& [k, v] : c.metadata)
    md[k] = v;
  o["metadata"] = std::move(md);
  o["model"] = c.model;
  o["request_logprobs"] = c.request_logprobs;
  o["temperature"] = c.temperature;
  o["top_p"] = c.top_p;
  return json::serialize(o);
}

std::string call_fingerprint(const std::string& settings, const sample_request& req) {
  sha256 h;
  std::string buf;
  buf.reserve(settings.size() + 16 + 8 * req.prompt.tokens.size());
  append_sized(buf, settings);
  buf += "prompt:";
  for (auto t : req.prompt.tokens) {
    buf += std::to_string(t);
    buf += ',';
  }
  buf += "|stop:";
  buf += req.stop.bare_string ? "bare:" : "list:";
  for (auto t : req.stop.token_ids) {
    buf += std::to_string(t);
    buf += ',';
  }
  buf += '|';
  for (auto& s : req.stop.strings)
    append_sized(buf, s);
  h.update(buf);
  return h.finish();
}

std::string call_key(std::string_view run_id, std::string_view step,
                     std::string_view fingerprint, uint32_t occurrence) {
  std::string in = "sail-tinker/run/v1|";
  append_sized(in, run_id);
  append_sized(in, step);
  in += fingerprint;
  in += '|';
  in += std::to_string(occurrence);
  return "st2-" + sha256_hex(in);
}

journal_options durable_run::default_journal_options() {
  journal_options o;
  o.commit_interval = std::chrono::milliseconds(5);
  return o;
}

caf::expected<std::shared_ptr<durable_run>>
durable_run::open(const std::string& path, std::optional<std::string> run_id,
                  journal_options opts) {
  if (run_id)
    if (auto err = check_run_id(*run_id))
      return invalid_argument("run_id", render(err));
  // Durable fronts wait for a commit notice before they send; only the
  // journal's own committer thread gives one.
  if (!opts.background)
    return invalid_argument("background", "a durable run commits on the journal's own "
                                          "thread (journal_options::background)");
  // The journal holds create bodies, signed URLs included: a new one is
  // created readable by its owner only (SQLite gives the -wal file the
  // database's mode).
  if (int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600); fd >= 0)
    ::close(fd);
  auto opened = journal::open(path, opts);
  if (!opened)
    return std::move(opened.error());
  std::shared_ptr<durable_run> run{new durable_run};
  run->path_ = path;
  run->jr_ = std::move(*opened);
  if (auto& r = run->jr_->run()) {
    if (r->config != trainer_config)
      return invalid_argument("run", path + " is the journal of a `sail-tinker rollout --input` "
                                            "job, not of a trainer run");
    if (run_id && *run_id != r->run_id)
      return invalid_argument("run_id", "run_id " + *run_id + " differs from the run "
                                          + r->run_id + " of the journal " + path);
    run->id_ = r->run_id;
  } else {
    run->id_ = run_id ? *run_id : new_run_id();
    if (auto err = run->jr_->start_run({run->id_, trainer_config, "", 0}))
      return err;
  }
  return run;
}

durable_run::~durable_run() {
  static_cast<void>(close());
}

caf::error durable_run::close() {
  std::unique_ptr<journal> jr;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    jr = std::move(jr_);
  }
  if (!jr)
    return caf::none;
  return jr->commit();
}

void durable_run::record_delivered(const std::string& label, uint64_t step,
                                   std::function<void(const caf::error&)> then) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!jr_) {
    then(make_error(errc::cancelled, "the run is closed", "run"));
    return;
  }
  if (auto err = jr_->record_key("delivered/" + label, 0, std::to_string(step))) {
    then(err);
    return;
  }
  jr_->when_committed(std::move(then));
}

caf::expected<std::optional<uint64_t>> durable_run::delivered(const std::string& label) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!jr_)
    return make_error(errc::cancelled, "the run is closed", "run");
  auto rows = jr_->samples("delivered/" + label);
  if (!rows)
    return std::move(rows.error());
  if (rows->empty())
    return std::optional<uint64_t>{};
  return std::optional<uint64_t>{std::stoull(rows->front().key)};
}

caf::expected<std::vector<sample_record>> durable_run::calls(const std::string& step) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!jr_)
    return make_error(errc::cancelled, "the run is closed", "run");
  return jr_->samples(step);
}

bool durable_run::closed() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return jr_ == nullptr;
}

caf::error durable_run::load(const std::string& step, step_state& st) {
  auto rows = jr_->samples(step);
  if (!rows)
    return std::move(rows.error());
  // Rows hold their settings whole or by reference to a whole one.
  std::unordered_map<std::string, std::string> whole;
  for (auto& r : *rows)
    if (!r.call.empty() && r.call[0] != '#')
      whole.emplace(settings_ref(r.call), r.call);
  for (auto& r : *rows) {
    auto& settings = r.call;
    if (!settings.empty() && settings[0] == '#') {
      auto i = whole.find(settings);
      settings = i != whole.end() ? i->second : std::string{};
    }
    st.slots[r.member] = slot_info{settings};
    st.next_slot = std::max(st.next_slot, r.member + 1);
    known_call k;
    k.slot = r.member;
    k.state = r.state;
    k.request = std::move(r.request);
    k.response_id = std::move(r.response_id);
    k.result = std::move(r.body);
    st.calls.emplace(r.key, std::move(k));
  }
  st.loaded = true;
  return caf::none;
}

caf::expected<call_plan> durable_run::plan(const std::string& step, const std::string& settings,
                                           const std::string& fingerprint) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!jr_)
    return make_error(errc::cancelled, "the run is closed", "run");
  auto& st = steps_[step];
  if (!st.loaded)
    if (auto err = load(step, st))
      return err;
  // A call the journal holds under its key is that call, wherever it comes
  // in the step (concurrent calls may arrive in another order after a
  // restart). Otherwise the same position in the journal's step: same
  // settings, or refused.
  auto position = st.position;
  auto key = call_key(id_, step, fingerprint, st.occurrences[fingerprint]);
  if (auto i = st.slots.find(position); st.calls.count(key) == 0 && i != st.slots.end()
                                         && !i->second.settings.empty()
                                         && i->second.settings != settings) {
    std::string field;
    auto difference = config_difference(i->second.settings, settings, &field);
    return invalid_argument(field.empty() ? "call" : field,
                            "run " + id_ + ", step " + step + ", call "
                              + std::to_string(position) + ": " + difference
                                     + " (the same run and step must make the same calls; a "
                                       "new step or run id starts afresh)");
  }
  ++st.position;
  ++st.occurrences[fingerprint];
  call_plan p;
  p.key = std::move(key);
  auto k = st.calls.find(p.key);
  if (k == st.calls.end() || k->second.request.empty()) {
    p.source = call_source::fresh;
    // A new call takes its position's slot when that is free.
    if (st.slots.count(position) == 0 && k == st.calls.end()) {
      p.slot = position;
      st.next_slot = std::max(st.next_slot, position + 1);
    } else if (k != st.calls.end()) {
      p.slot = k->second.slot;
    } else {
      p.slot = st.next_slot++;
    }
    st.slots.try_emplace(p.slot);
    ++st.stats.fresh;
    return p;
  }
  auto& known = k->second;
  p.slot = known.slot;
  p.request = known.request;
  if (known.state == sample_state::completed) {
    p.source = call_source::journal;
    p.result = known.result;
    ++st.stats.from_journal;
  } else if (!known.response_id.empty()) {
    p.source = call_source::reattach;
    p.response_id = known.response_id;
    ++st.stats.reattached;
  } else {
    p.source = call_source::resend;
    ++st.stats.resent;
  }
  return p;
}

caf::error durable_run::record_sent(const std::string& step, uint32_t slot,
                                    const std::string& key, const std::string& request,
                                    const std::string& settings, const std::string& version) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!jr_)
    return make_error(errc::cancelled, "the run is closed", "run");
  // Whole in the step's first row with these settings (it commits no later
  // than the rows that refer to it), by reference afterwards.
  auto& written = steps_[step].written_settings;
  auto i = written.find(settings);
  if (i == written.end()) {
    written.emplace(settings, settings_ref(settings));
    return jr_->record_sent(step, slot, key, request, settings, version);
  }
  return jr_->record_sent(step, slot, key, request, i->second, version);
}

void durable_run::when_committed(std::function<void(const caf::error&)> then) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (jr_) {
      jr_->when_committed(std::move(then));
      return;
    }
  }
  then(make_error(errc::cancelled, "the run is closed", "run"));
}

void durable_run::record_accepted(const std::string& step, uint32_t slot,
                                  const std::string& key, const std::string& response_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (jr_)
    static_cast<void>(jr_->record_accepted(step, slot, key, response_id));
}

void durable_run::record_completed(const std::string& step, uint32_t slot,
                                   const std::string& key, const tokens_with_logprobs& result) {
  auto text = format_result(result);
  std::lock_guard<std::mutex> guard{mtx_};
  if (jr_)
    static_cast<void>(jr_->record_completed(step, slot, key, text));
}

void durable_run::record_failed(const std::string& step) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& st = steps_[step];
  ++st.stats.failed;
}

std::map<std::string, step_stats> durable_run::stats() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::map<std::string, step_stats> out;
  for (auto& [step, st] : steps_)
    out.emplace(step, st.stats);
  return out;
}

} // namespace sail::rollout
