#include "sail_tinker/rollout/file_run.hpp"

#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <random>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include "sail_tinker/actors/rollout_driver.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/rollout/failpoint.hpp"
#include "sail_tinker/rollout/keys.hpp"
#include "sail_tinker/rollout/run_config.hpp"

namespace sail::rollout {

namespace json = boost::json;

namespace {

using clock_type = std::chrono::steady_clock;

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
  /// What the member holds of the spending cap while in flight.
  std::optional<budget_hold> hold;
  /// When it was sent (its latency goes into the journal).
  clock_type::time_point sent;
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



std::string directory_of(const std::string& path) {
  std::string copy = path;
  return ::dirname(copy.data());
}

bool non_empty_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && st.st_size > 0;
}

} // namespace

/// One rollout run (its run id names it in the journal): the prompts
/// file read, its samples sent and written. Not a sail_job, the encoded
/// request the worker pool runs.
class file_run::loop {
public:
  loop(const file_run_settings& s, prompts_reader& in, samples_writer& out, journal* jr,
       std::string run_id, const input_summary& input)
    : s_(s), in_(in), out_(out), jr_(jr), run_id_(std::move(run_id)), input_(input),
      limits_(s.limits) {
    // A journal without any sample or prompt row has nothing to look up.
    lookups_ = jr_ != nullptr && !jr_->empty();
    events_ = std::make_shared<run_event_queue>();
  }

  /// Runs until every prompt is written, or until stop() and the work in
  /// flight has drained. Returns a fatal error, if any.
  caf::error run(caf::actor_system& sys, completer_actor target,
                 std::chrono::milliseconds tick, const progress_fn& progress) {
    driver_ = spawn_run_driver(sys, std::move(target), events_);
    start_ = clock_type::now();
    if (auto err = count_journal())
      return err;
    fill();
    std::vector<run_event> batch;
    while (!finished()) {
      auto until = clock_type::now() + tick;
      if (jr_ != nullptr)
        if (auto due = jr_->until_due())
          until = std::min(until, clock_type::now() + *due);
      if (stopping_ && clock_type::now() >= drain_deadline_)
        break; // cancellations did not all come back in time
      if (stopping_)
        until = std::min(until, drain_deadline_);
      batch.clear();
      events_->wait(batch, until);
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
      if (progress)
        progress(snapshot(), false);
    }
    if (progress)
      progress(snapshot(), true);
    if (!fatal_) {
      auto err = jr_ != nullptr ? jr_->commit() : out_.sync();
      if (err)
        fail(std::move(err));
    }
    elapsed_ = std::chrono::duration<double>(clock_type::now() - start_).count();
    // The handle goes before the actor system does.
    caf::anon_send_exit(driver_, caf::exit_reason::user_shutdown);
    driver_ = nullptr;
    return fatal_;
  }

  /// From the signal thread: ask the loop to stop.
  void request_stop() {
    stop_requested_.store(true);
    events_->wake();
  }

  bool interrupted() const {
    return stopping_ && !fatal_;
  }

  file_run_counters counters() const {
    file_run_counters c;
    c.skipped = skipped_;
    c.written = written_;
    c.ok = ok_;
    c.failed = failed_;
    c.tokens = tokens_;
    c.arrived = arrived_;
    c.reattached = reattached_;
    c.from_journal = from_journal_;
    c.elapsed = elapsed_;
    c.interrupted = interrupted();
    c.budget_stopped = budget_stopped_ && !stopping_;
    c.samples_done = skipped_samples_ + from_journal_ + ok_ + failed_;
    return c;
  }

  const std::vector<double>& latencies() const {
    return latencies_.values();
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
    if (stopping_ || budget_stopped_)
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
    while (!stopping_ && !budget_stopped_ && !input_done_ && in_flight_prompts_ < s_.concurrency
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
    uint64_t loaded = 0;
    uint64_t reattached = 0;
    for (uint32_t i = 0; i < n; ++i) {
      auto& m = p.members[i];
      m.key = rollout::sample_key(run_id_, line.id, i);
      auto rec = std::find_if(records.begin(), records.end(),
                              [i](const rollout::sample_record& r) { return r.member == i; });
      if (rec != records.end() && rec->state == rollout::sample_state::completed) {
        m.text = std::move(rec->body);
        m.ok = true;
        m.tokens = count_tokens(*m.text);
        ++loaded;
        continue;
      }
      if (rec != records.end() && !rec->response_id.empty()) {
        m.response_id = rec->response_id;
        ++reattached;
      }
      ++p.pending;
    }
    sample_request base;
    base.prompt = model_input{std::move(line.prompt)};
    base.stop = std::move(line.stop);
    base.max_tokens = line.max_tokens;
    base.group_id = gid;
    base.prompt_cache_key = gid;
    // The spending cap: every member still to send holds its worst case
    // (re-attached ones too, beyond the cap: the server bills them anyway).
    // A prompt that does not fit is not started: the run stops creating, the
    // samples in flight finish, and a rerun with a larger cap takes it up.
    if (s_.cap != nullptr && p.pending > 0) {
      auto prompt_len = static_cast<int64_t>(base.prompt.tokens.size());
      auto max_tokens = effective_max_tokens(s_.ccfg, base);
      for (auto& m : p.members) {
        if (m.text)
          continue;
        auto h = s_.cap->reserve(s_.ccfg.model, s_.ccfg.completion_window, prompt_len,
                                 max_tokens, !m.response_id.empty());
        if (!h) {
          for (auto& x : p.members)
            if (x.hold)
              s_.cap->release(*x.hold);
          budget_stopped_ = true;
          return caf::none;
        }
        m.hold = *h;
      }
    }
    from_journal_ += loaded;
    reattached_ += reattached;
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
      m.sent = clock_type::now();
      ++in_flight_samples_;
      caf::anon_send(driver_, atom::sample_v, ticket(seq, i), std::move(req));
    }
    return caf::none;
  }

  /// A resume: the billed usage of every result in the journal (written or
  /// not) counts toward the totals and as spent.
  caf::error count_journal() {
    if (jr_ == nullptr || jr_->empty() || (s_.ledger == nullptr && s_.cap == nullptr))
      return caf::none;
    auto& model = s_.ccfg.model;
    auto& window = s_.ccfg.completion_window;
    return jr_->for_each_completed([&](const std::string&, const sample_record& r) {
      auto usage = parse_result_usage(r.body);
      if (s_.ledger != nullptr)
        s_.ledger->add(model, window, usage);
      if (s_.cap != nullptr)
        s_.cap->add_spent(model, window, usage);
    });
  }

  static size_t count_tokens(const std::string& body) {
    json::error_code ec;
    auto v = json::parse(body, ec);
    if (ec || !v.is_object())
      return 0;
    auto* t = v.get_object().if_contains("tokens");
    return t != nullptr && t->is_array() ? t->get_array().size() : 0;
  }

  void handle(run_event& ev) {
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
    if (m.hold) {
      // Unknown usage (failed, malformed): the worst case stays spent.
      s_.cap->settle(*m.hold, s_.ccfg.model, s_.ccfg.completion_window,
                     ev.outcome ? ev.outcome->usage : std::nullopt);
      m.hold.reset();
    }
    if (ev.outcome) {
      std::optional<double> cost;
      if (s_.ledger != nullptr)
        cost = s_.ledger->add(s_.ccfg.model, s_.ccfg.completion_window, ev.outcome->usage);
      m.text = rollout::format_result(*ev.outcome, cost);
      m.ok = true;
      m.tokens = ev.outcome->tokens.size();
      if (jr_ != nullptr) {
        auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now()
                                                                             - m.sent);
        if (auto err = jr_->record_completed(p.id, member, m.key, *m.text, latency.count()))
          return fail(std::move(err));
      }
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

  file_run_progress snapshot() const {
    file_run_progress p;
    p.seconds = std::chrono::duration<double>(clock_type::now() - start_).count();
    p.samples_total = input_.samples;
    p.samples_done = std::min<uint64_t>(input_.samples,
                                        skipped_samples_ + arrived_ + from_journal_);
    p.prompts_total = input_.prompts;
    p.prompts_done = skipped_ + written_;
    p.written = written_;
    p.failed = failed_;
    p.reattached = reattached_;
    p.in_flight = in_flight_samples_;
    p.arrived = arrived_;
    return p;
  }

  const file_run_settings& s_;
  rollout::prompts_reader& in_;
  rollout::samples_writer& out_;
  rollout::journal* jr_;
  std::string run_id_;
  rollout::input_summary input_;
  rollout::prompt_limits limits_;
  std::shared_ptr<run_event_queue> events_;
  run_driver_actor driver_;
  bool lookups_ = false;
  bool input_done_ = false;
  uint64_t next_seq_ = 0;
  std::map<uint64_t, open_prompt> open_;
  size_t in_flight_prompts_ = 0;
  size_t in_flight_samples_ = 0;
  bool blocked_ = false;
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
  bool budget_stopped_ = false;
};


caf::expected<std::unique_ptr<file_run>> file_run::prepare(file_run_settings s) {
  std::unique_ptr<file_run> made{new file_run};
  made->s_ = std::move(s);
  auto& st = made->s_;

  // 1. The input, checked whole before anything is sent.
  if (st.input == "-") {
    auto fd = spool_stdin(directory_of(st.output));
    if (!fd)
      return std::move(fd.error());
    auto r = prompts_reader::adopt(*fd, "standard input");
    if (!r)
      return std::move(r.error());
    made->in_ = std::move(*r);
  } else {
    auto r = prompts_reader::open(st.input);
    if (!r)
      return std::move(r.error());
    made->in_ = std::move(*r);
  }
  auto input = validate_prompts(*made->in_, st.limits, st.group_size);
  if (!input)
    return std::move(input.error());
  made->input_ = *input;

  // 2. Journal and output: a new run, or the resume of the journal's run.
  if (st.restart)
    if (auto err = start_over(st.journal_path, st.output))
      return err;
  auto& jr = made->jr_;
  auto config_text = canonical_config(st.ccfg, st.group_size);
  std::string run_id;
  if (!st.journal_path.empty()) {
    auto opened = journal::open(st.journal_path);
    if (!opened)
      return std::move(opened.error());
    jr = std::move(*opened);
    if (auto& run = jr->run()) {
      made->resuming_ = true;
      if (st.run_id && *st.run_id != run->run_id)
        return invalid_argument(
          "run-id", "--run-id " + *st.run_id + " differs from the journal's run "
                      + run->run_id + " (" + st.journal_path + "; --restart starts over)");
      if (run->config != config_text)
        return invalid_argument(
          "config", "the configuration differs from the journal's (" + st.journal_path
                      + "): " + config_difference(run->config, config_text)
                      + " (--restart starts over)");
      if (run->input_sha256 != input->sha256)
        return invalid_argument(
          "input", "the input differs from the journal's (" + st.journal_path + "): sha256 "
                     + input->sha256.substr(0, 16) + "..., " + std::to_string(input->lines)
                     + " lines; the journal has sha256 " + run->input_sha256.substr(0, 16)
                     + "..., " + std::to_string(run->input_lines)
                     + " lines (--restart starts over)");
      run_id = run->run_id;
      // Reconcile the output with the journal: lines after the durable offset
      // are finished prompts; a torn last line goes.
      auto* j = jr.get();
      auto repaired = repair_samples_file(st.output, jr->output_offset(),
                                          [j](std::string_view id) {
                                            return j->record_written(id);
                                          });
      if (!repaired)
        return std::move(repaired.error());
      made->repaired_lines_ = repaired->lines;
      made->torn_bytes_ = repaired->torn_bytes;
      if (auto err = jr->set_output_offset(repaired->size))
        return err;
    }
  }
  if (!made->resuming_) {
    if (non_empty_file(st.output))
      return invalid_argument(
        "output", st.output + " exists and is not empty, but "
                    + (st.journal_path.empty() ? std::string{"there is no journal (--no-journal)"}
                                               : "the journal " + st.journal_path + " is new")
                    + ": another run's output? (--restart overwrites it)");
    run_id = st.run_id ? *st.run_id : new_run_id();
  }
  auto opened_out = samples_writer::open(st.output);
  if (!opened_out)
    return std::move(opened_out.error());
  made->out_ = std::move(*opened_out);
  if (jr) {
    // Before every commit (on the journal's thread): the lines whose
    // prompts the commit marks written reach the disk first. The destructor
    // closes the journal before the output.
    auto* out = made->out_.get();
    jr->on_commit([out]() -> caf::error { return out->sync(); });
    if (!made->resuming_) {
      if (auto err = jr->start_run({run_id, config_text, input->sha256, input->lines}))
        return err;
    } else if (auto err = jr->commit()) {
      return err;
    }
  }
  if (jr && made->resuming_) {
    auto sum = jr->summary();
    if (!sum)
      return std::move(sum.error());
    made->before_ = *sum;
  }
  made->run_id_ = run_id;
  made->loop_ = std::make_unique<loop>(made->s_, *made->in_, *made->out_, jr.get(), run_id,
                                      made->input_);
  failpoint::hit("run_started");
  return made;
}

file_run::~file_run() {
  // The journal's committer calls into the output (the hook): it goes first.
  loop_.reset();
  jr_.reset();
}

uint64_t file_run::output_size() const {
  return out_->size();
}

caf::error file_run::run(caf::actor_system& sys, completer_actor target,
                         std::chrono::milliseconds tick, progress_fn progress) {
  return loop_->run(sys, std::move(target), tick, progress);
}

void file_run::request_stop() {
  loop_->request_stop();
}

file_run_counters file_run::counters() const {
  return loop_->counters();
}

const std::map<std::string, uint64_t>& file_run::errors_by_kind() const {
  return loop_->errors_by_kind();
}

const std::string& file_run::first_error() const {
  return loop_->first_error();
}

const std::vector<double>& file_run::latencies() const {
  return loop_->latencies();
}

caf::error start_over(const std::string& journal_path, const std::string& output) {
  if (!journal_path.empty())
    if (auto err = journal::remove(journal_path))
      return err;
  if (::truncate(output.c_str(), 0) != 0 && errno != ENOENT)
    return make_error(errc::io_error, "cannot truncate " + output + ": " + std::strerror(errno),
                      "output");
  return caf::none;
}

} // namespace sail::rollout
