// sail-tinker rollout --input: the main job. Prompts file in, samples file
// out, an SQLite journal between (contracts/rollout-files.md,
// docs/operations.md "The main job").
//
// Threads: the job loop runs on the main thread and owns the input reader,
// the samples writer and the journal (all blocking file I/O stays off CAF's
// scheduler). A small driver actor sends each sample to the completer (local
// runtime or cluster) and is the observer of accepted creates; it hands
// results and response ids back through a locked queue the loop waits on.
//
// Order of durable effects per sample (what makes every crash recoverable):
//   1. the run row (run id, fingerprints) is committed before any request:
//      every key is a function of it, so every key is journaled before its
//      create (write-ahead);
//   2. accepted -> the response id goes into the open journal transaction;
//   3. result   -> its body goes into the open journal transaction;
//   4. a prompt's last result -> its output line is appended, and "written"
//      goes into the open transaction;
//   5. grouped commit: the samples file is written and fdatasync'ed, its size
//      stored as the durable offset, then the transaction commits.
// A resume truncates a torn last output line, marks the prompts whose lines
// lie after the durable offset as written, skips written prompts, takes
// stored bodies, polls known response ids and creates the rest under their
// (same) keys: Sail replays them, so no inference runs twice.
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <deque>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <unordered_map>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/app/rollout_common.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/rollout/failpoint.hpp"
#include "sail_tinker/rollout/journal.hpp"
#include "sail_tinker/rollout/keys.hpp"
#include "sail_tinker/rollout/prompts_file.hpp"
#include "sail_tinker/rollout/samples_file.hpp"

namespace sail::app {

namespace json = boost::json;

std::vector<flag_spec> rollout_job_flags() {
  return {
    {"output", "FILE", "samples file, one JSON object per prompt (required with --input)"},
    {"journal", "FILE", "SQLite journal of the run (default OUTPUT.journal)"},
    {"no-journal", "", "run without a journal: no resume (for benchmarks)"},
    {"run-id", "ID", "run id the Idempotency-Keys derive from (default: generated, kept in "
                     "the journal)"},
    {"restart", "", "discard the journal and the output, start over (new run id)"},
    {"ordered", "", "write the output in input order (default: completion order)"},
  };
}

namespace {

using clock_type = std::chrono::steady_clock;

// -- events: driver -> job loop ---------------------------------------------------------

/// What the driver reports about one sample (ticket = prompt seq << 32 | member).
struct job_event {
  uint64_t ticket = 0;
  /// True: Sail accepted the create under `response_id`. False: `outcome`.
  bool accepted = false;
  std::string response_id;
  caf::expected<tokens_with_logprobs> outcome{tokens_with_logprobs{}};
};

/// The locked hand-over between the driver actor and the job loop.
class event_queue {
public:
  void push(job_event ev) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      items_.push_back(std::move(ev));
    }
    cv_.notify_one();
  }

  void wake() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      woken_ = true;
    }
    cv_.notify_one();
  }

  /// Moves the queued events into `out`; waits for one (or a wake) until
  /// `until` if there is none.
  void wait(std::vector<job_event>& out, clock_type::time_point until) {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait_until(guard, until, [this] { return !items_.empty() || woken_; });
    woken_ = false;
    for (auto& ev : items_)
      out.push_back(std::move(ev));
    items_.clear();
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<job_event> items_;
  bool woken_ = false;
};

// -- the driver actor -------------------------------------------------------------------------

/// sample: send one sample (ticket, request) to the completer; cancel: cancel
/// everything in flight and refuse new samples; accepted (from workers):
/// forward a response id to the loop.
using job_driver_actor = sample_observer_actor::extend<
  caf::reacts_to<atom::sample, uint64_t, sample_request>,
  caf::reacts_to<atom::cancel, std::string>>;

struct job_driver_state {
  static inline const char* name = "sail.rollout_job";

  job_driver_actor::stateful_pointer<job_driver_state> self = nullptr;
  completer_actor target;
  std::shared_ptr<event_queue> events;
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
    job_event ev;
    ev.ticket = ticket;
    ev.outcome = std::move(res);
    events->push(std::move(ev));
  }

  void accepted(const std::string& key, std::string& response_id) {
    auto i = tickets.find(key);
    if (i == tickets.end())
      return; // already answered
    job_event ev;
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

job_driver_actor::behavior_type
job_driver(job_driver_actor::stateful_pointer<job_driver_state> self, completer_actor target,
           std::shared_ptr<event_queue> events) {
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

// -- the run's configuration fingerprint -----------------------------------------------------

/// The settings that shape a request body (and so must not change under the
/// same keys: Sail answers a key reused with another body with 400), as a
/// canonical JSON object. The signed URL is a secret: only its hash is kept.
std::string canonical_config(const completer_config& c, uint32_t group_size) {
  json::object o;
  auto opt = [](const std::optional<std::string>& x) -> json::value {
    return x ? json::value(*x) : json::value(nullptr);
  };
  o["adapter_config"] = opt(c.adapter_config);
  o["group_size"] = group_size;
  o["lora"] = opt(c.lora);
  o["max_tokens"] = c.max_tokens;
  json::object md;
  for (auto& [k, v] : c.metadata)
    md[k] = v;
  o["metadata"] = std::move(md);
  o["model"] = c.model;
  o["request_logprobs"] = c.request_logprobs;
  o["temperature"] = c.temperature;
  o["tinker_lora_name"] = opt(c.tinker_lora_name);
  o["tinker_lora_signed_url_sha256"] = c.tinker_lora_signed_url
                                         ? json::value(rollout::sha256_hex(
                                           *c.tinker_lora_signed_url))
                                         : json::value(nullptr);
  o["top_p"] = c.top_p;
  o["window"] = c.completion_window;
  return json::serialize(o);
}

/// The settings that differ between two canonical configurations.
std::string config_difference(const std::string& journal, const std::string& now) {
  json::error_code ec1;
  json::error_code ec2;
  auto a = json::parse(journal, ec1);
  auto b = json::parse(now, ec2);
  if (ec1 || ec2 || !a.is_object() || !b.is_object())
    return "the journal's configuration is unreadable";
  std::set<std::string> names;
  for (auto& kv : a.get_object())
    names.emplace(kv.key());
  for (auto& kv : b.get_object())
    names.emplace(kv.key());
  std::string out;
  for (auto& n : names) {
    auto* x = a.get_object().if_contains(n);
    auto* y = b.get_object().if_contains(n);
    if (x != nullptr && y != nullptr && *x == *y)
      continue;
    if (!out.empty())
      out += ", ";
    auto show = [&](const json::value* v) {
      if (v == nullptr)
        return std::string{"(none)"};
      if (n == "tinker_lora_signed_url_sha256")
        return std::string{v->is_null() ? "(none)" : "(a signed URL)"};
      if (v->is_double()) {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof(buf), v->get_double());
        return std::string{buf, r.ptr};
      }
      return json::serialize(*v);
    };
    out += n + " (journal " + show(x) + ", now " + show(y) + ")";
  }
  return out;
}

// -- the job --------------------------------------------------------------------------------

/// One member of an open prompt.
struct member_slot {
  std::string key;
  std::string response_id;
  /// The formatted sample (result or error) once done.
  std::optional<std::string> text;
  bool ok = false;
  size_t tokens = 0;
  /// The errc name of a failed member.
  std::string error_kind;
};

/// A prompt read from the input and not yet written.
struct open_prompt {
  std::string id;
  std::optional<std::string> meta;
  std::vector<member_slot> members;
  size_t pending = 0;
  /// A member was cancelled (interrupted run): the prompt is left for the
  /// resume, not written.
  bool cancelled = false;
  clock_type::time_point started;
};

/// A bounded uniform sample of latencies (Vitter's algorithm R), so that the
/// percentiles of a million prompts need no million doubles.
class reservoir {
public:
  void add(double x) {
    ++seen_;
    if (xs_.size() < capacity) {
      xs_.push_back(x);
      return;
    }
    std::uniform_int_distribution<uint64_t> pick{0, seen_ - 1};
    auto i = pick(rng_);
    if (i < capacity)
      xs_[i] = x;
  }
  const std::vector<double>& values() const {
    return xs_;
  }

private:
  static constexpr size_t capacity = 10'000;
  std::vector<double> xs_;
  uint64_t seen_ = 0;
  std::mt19937_64 rng_{12345};
};

struct run_settings {
  std::string input;
  std::string output;
  std::string journal_path;  ///< empty: no journal
  std::optional<std::string> run_id;
  bool restart = false;
  bool ordered = false;
  uint32_t group_size = 1;
  uint32_t concurrency = 16;
  completer_config ccfg;
};

/// One run of the main job, `rollout --input` (its run id names it in the
/// journal): the prompts file read, its samples sent and written. Not a
/// sail_job, the encoded request the worker pool runs.
class rollout_run {
public:
  rollout_run(run_settings s, rollout::prompts_reader& in, rollout::samples_writer& out,
              rollout::journal* jr, std::string run_id, const rollout::input_summary& input,
              rollout::prompt_limits limits, progress_mode mode)
    : s_(std::move(s)), in_(in), out_(out), jr_(jr), run_id_(std::move(run_id)),
      input_(input), limits_(limits), mode_(mode) {
    // A journal without any sample or prompt row has nothing to look up.
    lookups_ = jr_ != nullptr && !jr_->empty();
  }

  /// Runs until every prompt is written, or until stop() and the work in
  /// flight has drained. Returns a fatal error, if any.
  caf::error run(job_driver_actor driver, std::shared_ptr<event_queue> events) {
    driver_ = std::move(driver);
    start_ = clock_type::now();
    auto last_line = start_;
    fill();
    std::vector<job_event> batch;
    while (!finished()) {
      auto tick = mode_ == progress_mode::bar ? std::chrono::milliseconds(100)
                                              : std::chrono::milliseconds(250);
      auto until = clock_type::now() + tick;
      if (jr_ != nullptr)
        if (auto due = jr_->until_due())
          until = std::min(until, clock_type::now() + *due);
      if (stopping_ && clock_type::now() >= drain_deadline_)
        break; // cancellations did not all come back in time
      if (stopping_)
        until = std::min(until, drain_deadline_);
      batch.clear();
      events->wait(batch, until);
      if (stop_requested_.load() && !stopping_)
        begin_stop();
      for (auto& ev : batch)
        handle(ev);
      if (fatal_)
        begin_stop();
      fill();
      if (jr_ != nullptr && !fatal_)
        if (auto err = jr_->maybe_commit())
          fail(std::move(err));
      if (mode_ == progress_mode::bar) {
        render_progress(false);
      } else if (mode_ == progress_mode::lines
                 && (clock_type::now() - last_line >= std::chrono::seconds(2)
                     || (!first_written_line_ && written_ > 0))) {
        // Every 2 s, and at once when the first prompt is written (time to
        // the first result).
        first_written_line_ = written_ > 0;
        last_line = clock_type::now();
        render_progress(false);
      }
    }
    render_progress(true);
    if (!fatal_) {
      auto err = jr_ != nullptr ? jr_->commit() : out_.sync();
      if (err)
        fail(std::move(err));
    }
    elapsed_ = std::chrono::duration<double>(clock_type::now() - start_).count();
    return fatal_;
  }

  /// From the signal thread: ask the loop to stop.
  void request_stop() {
    stop_requested_.store(true);
  }

  bool interrupted() const {
    return stopping_ && !fatal_;
  }

  // -- summary ----------------------------------------------------------------------

  void summary(const row_fn& row) const {
    row("prompts", std::to_string(written_) + " written, " + std::to_string(skipped_)
                     + " already in the output, of " + std::to_string(input_.prompts)
                     + (interrupted() ? " (interrupted)" : ""));
    row("samples", std::to_string(ok_) + " ok, " + std::to_string(failed_) + " failed, "
                     + std::to_string(reattached_) + " re-attached, "
                     + std::to_string(from_journal_) + " from the journal");
    row("tokens", std::to_string(tokens_) + " ("
                    + fmt(ok_ ? static_cast<double>(tokens_) / static_cast<double>(ok_) : 0.0)
                    + " per sample)");
    row("wall time", fmt(elapsed_, 2) + " s");
    row("throughput", fmt(elapsed_ > 0 ? static_cast<double>(arrived_) / elapsed_ : 0.0)
                        + " samples/s");
    auto& lat = latencies_.values();
    row("prompt latency", "p50 " + fmt(percentile(lat, 0.50), 3) + " s   p90 "
                            + fmt(percentile(lat, 0.90), 3) + " s   p99 "
                            + fmt(percentile(lat, 0.99), 3) + " s");
  }

  const std::map<std::string, uint64_t>& errors_by_kind() const {
    return errors_;
  }

  uint64_t failed() const {
    return failed_;
  }

  const std::string& first_error() const {
    return first_error_;
  }

private:
  static uint64_t ticket(uint64_t seq, uint32_t member) {
    return (seq << 32) | member;
  }

  bool finished() const {
    if (stopping_)
      return in_flight_samples_ == 0;
    return input_done_ && open_.empty();
  }

  void fail(caf::error err) {
    if (!fatal_)
      fatal_ = std::move(err);
  }

  void begin_stop() {
    if (stopping_)
      return;
    stopping_ = true;
    drain_deadline_ = clock_type::now() + std::chrono::seconds(10);
    caf::anon_send(driver_, atom::cancel_v, std::string{"all"});
  }

  /// Reads prompts while fewer than `concurrency` are in flight.
  void fill() {
    auto reorder_limit = s_.ordered ? std::max<size_t>(64, 4 * size_t{s_.concurrency})
                                    : SIZE_MAX;
    while (!stopping_ && !input_done_ && in_flight_prompts_ < s_.concurrency
           && open_.size() < reorder_limit) {
      std::string_view text;
      uint64_t line = 0;
      auto more = in_.next(text, line);
      if (!more) {
        fail(std::move(more.error()));
        return;
      }
      if (!*more) {
        input_done_ = true;
        return;
      }
      auto parsed = rollout::parse_prompt_line(text, line, limits_);
      if (!parsed) {
        fail(make_error(errc::io_error, "the input changed since it was checked: "
                                          + render(parsed.error()), "input"));
        return;
      }
      if (auto err = open(std::move(*parsed)))
        return fail(std::move(err));
    }
  }

  caf::error open(rollout::prompt_line line) {
    auto seq = next_seq_++;
    if (seq >= (uint64_t{1} << 32))
      return make_error(errc::io_error, "more than 2^32 prompts", "input");
    auto n = line.n.value_or(s_.group_size);
    std::vector<rollout::sample_record> records;
    if (lookups_) {
      auto done = jr_->written(line.id);
      if (!done)
        return std::move(done.error());
      if (*done) {
        ++skipped_;
        skipped_samples_ += n;
        return caf::none;
      }
      auto got = jr_->samples(line.id);
      if (!got)
        return std::move(got.error());
      records = std::move(*got);
    }
    open_prompt p;
    p.id = line.id;
    p.meta = std::move(line.meta);
    p.members.resize(n);
    p.started = clock_type::now();
    auto gid = rollout::group_key(run_id_, line.id);
    for (uint32_t i = 0; i < n; ++i) {
      auto& m = p.members[i];
      m.key = rollout::sample_key(run_id_, line.id, i);
      auto rec = std::find_if(records.begin(), records.end(),
                              [i](const rollout::sample_record& r) { return r.member == i; });
      if (rec != records.end() && rec->state == rollout::sample_state::completed) {
        m.text = std::move(rec->body);
        m.ok = true;
        m.tokens = count_tokens(*m.text);
        ++from_journal_;
        continue;
      }
      if (rec != records.end() && !rec->response_id.empty()) {
        m.response_id = rec->response_id;
        ++reattached_;
      }
      ++p.pending;
    }
    sample_request base;
    base.prompt = model_input{std::move(line.prompt)};
    base.stop = std::move(line.stop);
    base.max_tokens = line.max_tokens;
    base.group_id = gid;
    base.prompt_cache_key = gid;
    auto pending = p.pending;
    auto& stored = open_.emplace(seq, std::move(p)).first->second;
    if (pending == 0) {
      finish_prompt(seq);
      return caf::none;
    }
    ++in_flight_prompts_;
    for (uint32_t i = 0; i < n; ++i) {
      auto& m = stored.members[i];
      if (m.text)
        continue;
      auto req = base;
      req.key = m.key;
      req.response_id = m.response_id;
      ++in_flight_samples_;
      caf::anon_send(driver_, atom::sample_v, ticket(seq, i), std::move(req));
    }
    return caf::none;
  }

  static size_t count_tokens(const std::string& body) {
    json::error_code ec;
    auto v = json::parse(body, ec);
    if (ec || !v.is_object())
      return 0;
    auto* t = v.get_object().if_contains("tokens");
    return t != nullptr && t->is_array() ? t->get_array().size() : 0;
  }

  void handle(job_event& ev) {
    auto seq = ev.ticket >> 32;
    auto member = static_cast<uint32_t>(ev.ticket & 0xffffffffu);
    auto i = open_.find(seq);
    if (i == open_.end() || member >= i->second.members.size())
      return;
    auto& p = i->second;
    auto& m = p.members[member];
    if (m.text)
      return;
    if (ev.accepted) {
      m.response_id = ev.response_id;
      if (jr_ != nullptr)
        if (auto err = jr_->record_accepted(p.id, member, m.key, m.response_id))
          return fail(std::move(err));
      rollout::failpoint::hit("sample_accepted");
      return;
    }
    --in_flight_samples_;
    ++arrived_;
    rollout::failpoint::hit("sample_completed");
    if (ev.outcome) {
      m.text = rollout::format_result(*ev.outcome);
      m.ok = true;
      m.tokens = ev.outcome->tokens.size();
      if (jr_ != nullptr)
        if (auto err = jr_->record_completed(p.id, member, m.key, *m.text))
          return fail(std::move(err));
    } else {
      auto& err = ev.outcome.error();
      if (stopping_ && code_of(err) == errc::cancelled) {
        p.cancelled = true;
      } else {
        m.text = rollout::format_error(err);
        auto code = code_of(err);
        m.error_kind = code ? to_string(*code)
                            : (err == caf::sec::request_timeout ? "timeout" : "transport_error");
        if (first_error_.empty())
          first_error_ = render(err);
      }
    }
    if (--p.pending == 0) {
      --in_flight_prompts_;
      finish_prompt(seq);
    }
  }

  void finish_prompt(uint64_t seq) {
    if (!s_.ordered) {
      auto i = open_.find(seq);
      if (!i->second.cancelled)
        write(i->second);
      open_.erase(i);
      return;
    }
    // Input order: write the finished head of the line; a cancelled prompt
    // blocks the rest (they are written by the resume, in order).
    while (!open_.empty() && open_.begin()->second.pending == 0 && !blocked_) {
      auto& head = open_.begin()->second;
      if (head.cancelled) {
        blocked_ = true;
        break;
      }
      write(head);
      open_.erase(open_.begin());
    }
  }

  void write(open_prompt& p) {
    std::vector<std::string> texts;
    texts.reserve(p.members.size());
    for (auto& m : p.members) {
      if (m.ok) {
        ++ok_;
        tokens_ += m.tokens;
      } else {
        ++failed_;
        ++errors_[m.error_kind];
      }
      texts.push_back(std::move(*m.text));
    }
    if (auto err = out_.append(rollout::format_line(p.id, texts, p.meta)))
      return fail(std::move(err));
    if (jr_ != nullptr)
      if (auto err = jr_->record_written(p.id, out_.size()))
        return fail(std::move(err));
    ++written_;
    latencies_.add(std::chrono::duration<double>(clock_type::now() - p.started).count());
  }

  void render_progress(bool final) {
    if (mode_ == progress_mode::off)
      return;
    auto secs = std::chrono::duration<double>(clock_type::now() - start_).count();
    auto total = input_.samples;
    auto done = std::min<uint64_t>(total, skipped_samples_ + arrived_ + from_journal_);
    auto rate = secs > 0 ? static_cast<double>(arrived_) / secs : 0.0;
    auto left = total - done;
    std::string eta = left == 0 ? "0 s" : rate > 0 ? fmt_duration(static_cast<double>(left) / rate)
                                                   : "?";
    auto prompts_done = skipped_ + written_;
    if (mode_ == progress_mode::bar) {
      constexpr int width = 30;
      auto filled = total == 0 ? width : static_cast<int>(width * done / total);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(width, '.');
      std::cout << "\r[" << bar << "] " << prompts_done << '/' << input_.prompts << " prompts  "
                << done << '/' << total << " samples  " << failed_ << " failed  "
                << reattached_ << " re-attached  " << in_flight_samples_ << " in flight  "
                << fmt(rate) << " samples/s  ETA " << eta << "\x1b[K";
      if (final)
        std::cout << '\n';
      std::cout << std::flush;
    } else {
      std::cout << "progress: " << prompts_done << '/' << input_.prompts << " prompts, " << done
                << '/' << total << " samples (" << failed_ << " failed), " << reattached_
                << " re-attached, " << in_flight_samples_ << " in flight, " << fmt(secs)
                << " s, ETA " << eta << std::endl;
    }
  }

  run_settings s_;
  rollout::prompts_reader& in_;
  rollout::samples_writer& out_;
  rollout::journal* jr_;
  std::string run_id_;
  rollout::input_summary input_;
  rollout::prompt_limits limits_;
  progress_mode mode_;
  job_driver_actor driver_;
  bool lookups_ = false;
  bool input_done_ = false;
  uint64_t next_seq_ = 0;
  std::map<uint64_t, open_prompt> open_;
  size_t in_flight_prompts_ = 0;
  size_t in_flight_samples_ = 0;
  bool blocked_ = false;
  bool first_written_line_ = false;
  bool stopping_ = false;
  std::atomic<bool> stop_requested_{false};
  clock_type::time_point drain_deadline_;
  caf::error fatal_;
  clock_type::time_point start_;
  double elapsed_ = 0;
  // counters
  uint64_t skipped_ = 0;
  uint64_t skipped_samples_ = 0;
  uint64_t written_ = 0;
  uint64_t ok_ = 0;
  uint64_t failed_ = 0;
  uint64_t tokens_ = 0;
  uint64_t arrived_ = 0;
  uint64_t reattached_ = 0;
  uint64_t from_journal_ = 0;
  std::map<std::string, uint64_t> errors_;
  std::string first_error_;
  reservoir latencies_;
};

std::string directory_of(const std::string& path) {
  std::string copy = path;
  return ::dirname(copy.data());
}

bool non_empty_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && st.st_size > 0;
}

caf::expected<run_settings> run_settings_from(const parsed_args& args) {
  run_settings s;
  s.input = *args.get("input");
  auto output = args.get("output");
  if (!output || output->empty())
    return invalid_argument("output", "--input needs --output FILE");
  if (*output == "-")
    return invalid_argument("output", "--output must be a file (resume appends to it)");
  s.output = *output;
  if (args.has("no-journal")) {
    if (args.has("journal"))
      return invalid_argument("journal", "--journal and --no-journal exclude each other");
  } else {
    s.journal_path = args.get("journal").value_or(s.output + ".journal");
  }
  if (auto v = args.get("run-id")) {
    if (auto err = rollout::check_run_id(*v))
      return err;
    s.run_id = *v;
  }
  s.restart = args.has("restart");
  s.ordered = args.has("ordered");
  if (auto v = args.get("group-size")) {
    auto n = parse_int("group-size", *v, 1, 4096);
    if (!n)
      return std::move(n.error());
    s.group_size = static_cast<uint32_t>(*n);
  }
  if (auto v = args.get("concurrency")) {
    auto n = parse_int("concurrency", *v, 1, 100'000);
    if (!n)
      return std::move(n.error());
    s.concurrency = static_cast<uint32_t>(*n);
  }
  auto ccfg = completer_config_from(args);
  if (!ccfg)
    return std::move(ccfg.error());
  s.ccfg = std::move(*ccfg);
  if (!args.has("model"))
    s.ccfg.model = "moonshotai/Kimi-K2.6";
  if (!args.has("max-tokens"))
    s.ccfg.max_tokens = 32;
  if (s.ccfg.adapter_config) {
    auto normalized = normalize_adapter_config(*s.ccfg.adapter_config);
    if (!normalized)
      return std::move(normalized.error());
    s.ccfg.adapter_config = std::move(*normalized);
  }
  return s;
}

} // namespace

int run_rollout_job(const parsed_args& args, app_node_config& cfg) {
  auto settings = run_settings_from(args);
  if (!settings)
    return report_error(settings.error());
  auto& s = *settings;
  auto mode = progress_mode_from(args);
  if (!mode)
    return report_error(mode.error());
  auto tp = plan_target(args, cfg.app, s.ccfg);
  if (!tp)
    return report_error(tp.error());
  if (s.group_size > tp->opts.completer.max_group_size)
    return report_error(invalid_argument("group-size", "--group-size: at most "
                                                         + std::to_string(
                                                           tp->opts.completer.max_group_size)));

  // 1. The input, checked whole before anything is sent.
  std::unique_ptr<rollout::prompts_reader> in;
  if (s.input == "-") {
    auto fd = rollout::spool_stdin(directory_of(s.output));
    if (!fd)
      return report_error(fd.error());
    auto r = rollout::prompts_reader::adopt(*fd, "standard input");
    if (!r)
      return report_error(r.error());
    in = std::move(*r);
  } else {
    auto r = rollout::prompts_reader::open(s.input);
    if (!r)
      return report_error(r.error());
    in = std::move(*r);
  }
  rollout::prompt_limits limits;
  limits.max_group_size = tp->opts.completer.max_group_size;
  auto input = rollout::validate_prompts(*in, limits, s.group_size);
  if (!input)
    return report_error(input.error());

  // 2. Journal and output: a new run, or the resume of the journal's run.
  if (s.restart) {
    if (!s.journal_path.empty())
      if (auto err = rollout::journal::remove(s.journal_path))
        return report_error(err);
    if (::truncate(s.output.c_str(), 0) != 0 && errno != ENOENT)
      return report_error(make_error(errc::io_error, "cannot truncate " + s.output + ": "
                                                       + std::strerror(errno), "output"));
  }
  std::unique_ptr<rollout::journal> jr;
  auto config_text = canonical_config(s.ccfg, s.group_size);
  std::string run_id;
  bool resuming = false;
  uint64_t repaired_lines = 0;
  uint64_t torn_bytes = 0;
  if (!s.journal_path.empty()) {
    auto opened = rollout::journal::open(s.journal_path);
    if (!opened)
      return report_error(opened.error());
    jr = std::move(*opened);
    if (auto& run = jr->run()) {
      resuming = true;
      if (s.run_id && *s.run_id != run->run_id)
        return report_error(invalid_argument(
          "run-id", "--run-id " + *s.run_id + " differs from the journal's run "
                      + run->run_id + " (" + s.journal_path + "; --restart starts over)"));
      if (run->config != config_text)
        return report_error(invalid_argument(
          "config", "the configuration differs from the journal's (" + s.journal_path
                      + "): " + config_difference(run->config, config_text)
                      + " (--restart starts over)"));
      if (run->input_sha256 != input->sha256)
        return report_error(invalid_argument(
          "input", "the input differs from the journal's (" + s.journal_path + "): sha256 "
                     + input->sha256.substr(0, 16) + "..., " + std::to_string(input->lines)
                     + " lines; the journal has sha256 " + run->input_sha256.substr(0, 16)
                     + "..., " + std::to_string(run->input_lines)
                     + " lines (--restart starts over)"));
      run_id = run->run_id;
      // Reconcile the output with the journal: lines after the durable offset
      // are finished prompts; a torn last line goes.
      auto repaired = rollout::repair_samples_file(
        s.output, jr->output_offset(),
        [&](std::string_view id) { return jr->record_written(id); });
      if (!repaired)
        return report_error(repaired.error());
      repaired_lines = repaired->lines;
      torn_bytes = repaired->torn_bytes;
      if (auto err = jr->set_output_offset(repaired->size))
        return report_error(err);
    }
  }
  if (!resuming) {
    if (non_empty_file(s.output))
      return report_error(invalid_argument(
        "output", s.output + " exists and is not empty, but "
                    + (s.journal_path.empty() ? std::string{"there is no journal (--no-journal)"}
                                              : "the journal " + s.journal_path + " is new")
                    + ": another run's output? (--restart overwrites it)"));
    run_id = s.run_id ? *s.run_id : rollout::new_run_id();
  }
  auto opened_out = rollout::samples_writer::open(s.output);
  if (!opened_out)
    return report_error(opened_out.error());
  auto& out = **opened_out;
  // The journal's committer calls into `out` (the hook below): the journal
  // goes first, whichever way this function returns.
  struct journal_first {
    std::unique_ptr<rollout::journal>& j;
    ~journal_first() {
      j.reset();
    }
  } close_journal_first{jr};
  if (jr) {
    // Before every commit (on the journal's thread): the lines whose
    // prompts the commit marks written reach the disk first.
    jr->on_commit([&out]() -> caf::error { return out.sync(); });
    if (!resuming) {
      if (auto err = jr->start_run({run_id, config_text, input->sha256, input->lines}))
        return report_error(err);
    } else if (auto err = jr->commit()) {
      return report_error(err);
    }
  }
  rollout::journal_summary before;
  if (jr && resuming) {
    auto sum = jr->summary();
    if (!sum)
      return report_error(sum.error());
    before = *sum;
  }
  rollout::failpoint::hit("run_started");

  // 3. The target, then the run.
  block_termination_signals();
  rollout_target target;
  if (auto err = target.start_emulator(*tp))
    return report_error(err);
  int code = exit_ok;
  {
    caf::actor_system sys{cfg};
    if (auto err = target.start(sys, *tp, s.ccfg)) {
      target.shutdown_actors();
      return report_error(err);
    }
    std::cout << "rollout: " << input->prompts << " prompts, " << input->samples
              << " samples from " << (s.input == "-" ? "standard input" : s.input) << " -> "
              << s.output << ", run " << run_id << ", journal "
              << (jr ? s.journal_path : std::string{"off"}) << ", concurrency "
              << s.concurrency << ", window " << s.ccfg.completion_window << ", target "
              << target.description() << std::endl;
    if (resuming)
      std::cout << "resume: " << before.prompts_written << " prompts done (in the output"
                << (repaired_lines > 0 ? ", " + std::to_string(repaired_lines)
                                           + " of them found after the last commit"
                                       : std::string{})
                << "), " << before.samples_accepted << " samples to re-attach (response id known), "
                << before.samples_completed << " results from the journal"
                << (torn_bytes > 0 ? ", a torn last line of " + std::to_string(torn_bytes)
                                       + " bytes removed"
                                   : std::string{})
                << std::endl;
    auto events = std::make_shared<event_queue>();
    rollout_run file_run{s, *in, out, jr.get(), run_id, *input, limits, *mode};
    auto driver = sys.spawn(job_driver, target.completer(), events);
    signal_watcher watcher{[&file_run, events](int) {
      file_run.request_stop();
      events->wake();
    }};
    auto fatal = file_run.run(driver, events);
    watcher.stop();
    caf::anon_send_exit(driver, caf::exit_reason::user_shutdown);
    std::ostringstream text;
    auto row = [&](const std::string& k, const std::string& v) {
      text << "  " << std::left << std::setw(20) << k << v << '\n';
    };
    auto rep = target.stop(sys);
    text << "\nsummary\n";
    file_run.summary(row);
    target_rows(rep, file_run.errors_by_kind(), row);
    row("output", s.output + " (" + std::to_string(out.size()) + " bytes)");
    row("journal", jr ? s.journal_path + " (" + std::to_string(jr->commits()) + " commits)"
                      : std::string{"off"});
    auto [rss, peak] = rss_mib();
    row("memory", "RSS " + fmt(rss) + " MiB, peak " + fmt(peak) + " MiB");
    std::cout << text.str() << std::flush;
    if (!file_run.first_error().empty())
      log_warn("rollout", "first error", {{"error", file_run.first_error()}});
    if (fatal)
      code = report_error(fatal);
    else if (file_run.interrupted())
      code = exit_interrupted;
    else if (file_run.failed() > 0 || (rep.emulator && rep.emulator->max_runs_per_key > 1))
      code = exit_failure;
  }
  return code;
}

} // namespace sail::app
