#include "sail_tinker/rollout/journal.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include <sqlite3.h>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/failpoint.hpp"

namespace sail::rollout {

namespace {

// 2: samples gained request, call and version (trainer runs); a schema-1
// journal is upgraded in place when opened.
constexpr const char* schema_version = "2";

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
  prompt_id TEXT NOT NULL,
  member INTEGER NOT NULL,
  key TEXT NOT NULL,
  response_id TEXT,
  state INTEGER NOT NULL,
  body TEXT,
  request TEXT,
  call TEXT,
  version TEXT,
  PRIMARY KEY (prompt_id, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prompts (
  prompt_id TEXT PRIMARY KEY,
  written INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

using clock_type = std::chrono::steady_clock;

void bind_text(sqlite3_stmt* st, int idx, std::string_view text) {
  sqlite3_bind_text(st, idx, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

std::string column_text(sqlite3_stmt* st, int col) {
  auto* p = sqlite3_column_text(st, col);
  if (p == nullptr)
    return {};
  return std::string{reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(st, col))};
}

/// The failpoint "journal_commit": SQLite calls this while committing, after
/// the rollout's hook synced the samples file and before the commit is final.
int commit_failpoint(void*) {
  failpoint::hit("journal_commit");
  return 0;
}

} // namespace

journal::journal(std::string path, journal_options opts)
  : path_(std::move(path)), opts_(opts) {
}

journal::~journal() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stop_ = true;
  }
  wake_.notify_all();
  if (committer_.joinable())
    committer_.join();
  if (db_ != nullptr) {
    for (auto* st : stmts_)
      sqlite3_finalize(st);
    sqlite3_close(db_);
  }
}

caf::expected<std::unique_ptr<journal>> journal::open(const std::string& path,
                                                      journal_options opts) {
  std::unique_ptr<journal> j{new journal(path, opts)};
  if (auto err = j->init())
    return err;
  if (opts.background) {
    // The committer takes no signals (it inherits the mask at creation):
    // they stay with the application's threads, e.g. a sigwait loop.
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    j->committer_ = std::thread{[p = j.get()] { p->committer_loop(); }};
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  return j;
}

caf::error journal::remove(const std::string& path) {
  for (auto suffix : {"", "-wal", "-shm"}) {
    auto file = path + suffix;
    if (::unlink(file.c_str()) != 0 && errno != ENOENT)
      return make_error(errc::io_error, "cannot delete " + file + ": " + std::strerror(errno),
                        "journal");
  }
  return caf::none;
}

caf::error journal::fail(const char* what) {
  std::string msg = std::string{what} + " (" + path_ + "): ";
  msg += db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
  auto code = db_ != nullptr ? sqlite3_errcode(db_) : SQLITE_NOMEM;
  if (code == SQLITE_NOTADB)
    return invalid_argument("journal", path_ + " is not a sail-tinker journal (not an SQLite "
                                               "database)");
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
    msg += "; is another rollout using this journal?";
  return make_error(errc::io_error, std::move(msg), "journal");
}

caf::error journal::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    return fail("journal");
  }
  return caf::none;
}

sqlite3_stmt* journal::prepare(const char* sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK)
    return nullptr;
  stmts_.push_back(st);
  return st;
}

caf::error journal::init() {
  if (sqlite3_open_v2(path_.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr)
      != SQLITE_OK) {
    auto err = make_error(errc::io_error,
                          "cannot open journal " + path_ + ": "
                            + (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory"),
                          "journal");
    sqlite3_close(db_);
    db_ = nullptr;
    return err;
  }
  sqlite3_busy_timeout(db_, 0);
  // Exclusive locking before WAL: the WAL index lives in process memory (no
  // -shm file) and no second process can open the journal while we run.
  if (auto err = exec("PRAGMA locking_mode=EXCLUSIVE"))
    return err;
  if (auto err = exec("PRAGMA journal_mode=WAL"))
    return err;
  if (auto err = exec(opts_.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"))
    return err;
  // Take the write lock now, so a journal in use fails at open.
  if (auto err = exec("BEGIN EXCLUSIVE"))
    return err;
  if (auto err = exec(schema_sql)) {
    static_cast<void>(exec("ROLLBACK"));
    return err;
  }
  if (auto err = load_meta()) {
    static_cast<void>(exec("ROLLBACK"));
    return err;
  }
  if (auto err = exec("COMMIT"))
    return err;
  sqlite3_commit_hook(db_, commit_failpoint, nullptr);
  key_ = prepare("INSERT INTO samples(prompt_id, member, key, state) VALUES(?1, ?2, ?3, 0) "
                 "ON CONFLICT(prompt_id, member) DO UPDATE SET key = excluded.key");
  accepted_ = prepare(
    "INSERT INTO samples(prompt_id, member, key, response_id, state) VALUES(?1, ?2, ?3, ?4, 1) "
    "ON CONFLICT(prompt_id, member) DO UPDATE SET key = excluded.key, "
    "response_id = excluded.response_id, state = MAX(state, 1)");
  sent_ = prepare(
    "INSERT INTO samples(prompt_id, member, key, state, request, call, version) "
    "VALUES(?1, ?2, ?3, 0, ?4, ?5, ?6) "
    "ON CONFLICT(prompt_id, member) DO UPDATE SET key = excluded.key, state = 0, "
    "response_id = NULL, body = NULL, request = excluded.request, call = excluded.call, "
    "version = excluded.version");
  completed_ = prepare(
    "INSERT INTO samples(prompt_id, member, key, state, body, response_id) "
    "VALUES(?1, ?2, ?3, 2, ?4, ?5) "
    "ON CONFLICT(prompt_id, member) DO UPDATE SET key = excluded.key, state = 2, "
    "body = excluded.body, response_id = COALESCE(excluded.response_id, response_id)");
  written_ = prepare("INSERT INTO prompts(prompt_id, written) VALUES(?1, 1) "
                     "ON CONFLICT(prompt_id) DO UPDATE SET written = 1");
  is_written_ = prepare("SELECT written FROM prompts WHERE prompt_id = ?1");
  samples_of_ = prepare("SELECT member, key, response_id, state, body, request, call, version "
                        "FROM samples "
                        "WHERE prompt_id = ?1 ORDER BY member");
  meta_put_ = prepare("INSERT INTO meta(name, value) VALUES(?1, ?2) "
                      "ON CONFLICT(name) DO UPDATE SET value = excluded.value");
  for (auto* st : {key_, sent_, accepted_, completed_, written_, is_written_, samples_of_, meta_put_})
    if (st == nullptr)
      return fail("cannot prepare journal statements");
  return caf::none;
}

caf::error journal::load_meta() {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT name, value FROM meta", -1, &st, nullptr) != SQLITE_OK)
    return fail("cannot read journal");
  std::map<std::string, std::string> meta;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    meta[column_text(st, 0)] = column_text(st, 1);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE)
    return fail("cannot read journal");
  if (meta.empty()) {
    // A new journal: mark it as ours before anything else is written.
    sqlite3_stmt* put = nullptr;
    if (sqlite3_prepare_v2(db_, "INSERT INTO meta(name, value) VALUES('schema', ?1)", -1, &put,
                           nullptr)
        != SQLITE_OK)
      return fail("cannot write journal");
    sqlite3_bind_text(put, 1, schema_version, -1, SQLITE_STATIC);
    auto rc = sqlite3_step(put);
    sqlite3_finalize(put);
    return rc == SQLITE_DONE ? caf::none : fail("cannot write journal");
  }
  if (meta["schema"] == "1") {
    if (auto err = exec("ALTER TABLE samples ADD COLUMN request TEXT;"
                        "ALTER TABLE samples ADD COLUMN call TEXT;"
                        "ALTER TABLE samples ADD COLUMN version TEXT;"
                        "UPDATE meta SET value = '2' WHERE name = 'schema'"))
      return err;
    meta["schema"] = schema_version;
  }
  if (meta["schema"] != schema_version)
    return invalid_argument("journal", path_ + " is not a sail-tinker journal of schema "
                                         + std::string{schema_version} + " (schema \""
                                         + meta["schema"] + "\")");
  if (meta.count("run_id") != 0) {
    run_record r;
    r.run_id = meta["run_id"];
    r.config = meta["config"];
    r.input_sha256 = meta["input_sha256"];
    r.input_lines = std::strtoull(meta["input_lines"].c_str(), nullptr, 10);
    run_ = std::move(r);
  }
  output_offset_ = std::strtoull(meta["output_offset"].c_str(), nullptr, 10);
  return caf::none;
}

caf::error journal::step(sqlite3_stmt* st) {
  auto rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? caf::none : fail("cannot write journal");
}

caf::error journal::put_meta(std::string_view name, std::string_view value) {
  bind_text(meta_put_, 1, name);
  bind_text(meta_put_, 2, value);
  return step(meta_put_);
}

caf::error journal::start_run(const run_record& r) {
  if (auto err = commit())
    return err;
  std::lock_guard<std::mutex> guard{db_mtx_};
  if (auto err = exec("BEGIN"))
    return err;
  for (auto [name, value] : {std::pair<std::string_view, std::string>{"schema", schema_version},
                             {"run_id", r.run_id},
                             {"config", r.config},
                             {"input_sha256", r.input_sha256},
                             {"input_lines", std::to_string(r.input_lines)},
                             {"output_offset", std::to_string(output_offset_.load())}})
    if (auto err = put_meta(name, value)) {
      static_cast<void>(exec("ROLLBACK"));
      return err;
    }
  if (auto err = exec("COMMIT")) {
    static_cast<void>(exec("ROLLBACK"));
    return err;
  }
  ++commits_;
  run_ = r;
  return caf::none;
}

// -- events -------------------------------------------------------------------------

caf::error journal::add(event ev) {
  size_t size = 0;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (failed_)
      return failed_;
    if (batch_.empty())
      oldest_ = clock_type::now();
    batch_.push_back(std::move(ev));
    size = batch_.size();
  }
  // The first event arms the committer's timer; a full batch commits now.
  if (opts_.background && (size == 1 || size >= opts_.commit_every))
    wake_.notify_one();
  return caf::none;
}

caf::error journal::set_output_offset(uint64_t offset) {
  return add({event::kind_t::offset, {}, 0, {}, {}, offset, {}, {}});
}

caf::error journal::record_key(std::string_view prompt_id, uint32_t member,
                               std::string_view key) {
  return add({event::kind_t::key, std::string{prompt_id}, member, std::string{key}, {}, {}, {}, {}});
}

caf::error journal::record_sent(std::string_view prompt_id, uint32_t member,
                                std::string_view key, std::string_view request,
                                std::string_view call, std::string_view version) {
  return add({event::kind_t::sent, std::string{prompt_id}, member, std::string{key},
              std::string{request}, {}, std::string{call}, std::string{version}});
}

caf::error journal::record_accepted(std::string_view prompt_id, uint32_t member,
                                    std::string_view key, std::string_view response_id) {
  return add({event::kind_t::accepted, std::string{prompt_id}, member, std::string{key},
              std::string{response_id}, {}, {}, {}});
}

caf::error journal::record_completed(std::string_view prompt_id, uint32_t member,
                                     std::string_view key, std::string_view body) {
  return add({event::kind_t::completed, std::string{prompt_id}, member, std::string{key},
              std::string{body}, {}, {}, {}});
}

caf::error journal::record_written(std::string_view prompt_id,
                                   std::optional<uint64_t> output_end) {
  return add({event::kind_t::written, std::string{prompt_id}, 0, {}, {}, output_end, {}, {}});
}

// -- commits --------------------------------------------------------------------------

void journal::on_commit(std::function<caf::error()> hook) {
  std::lock_guard<std::mutex> guard{mtx_};
  hook_ = std::move(hook);
}

caf::error journal::apply(std::vector<event>& batch) {
  if (batch.empty())
    return caf::none;
  std::function<caf::error()> hook;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    hook = hook_;
  }
  if (hook)
    if (auto err = hook())
      return err;
  std::lock_guard<std::mutex> guard{db_mtx_};
  if (auto err = exec("BEGIN"))
    return err;
  auto rollback = [this](caf::error err) {
    static_cast<void>(exec("ROLLBACK"));
    return err;
  };
  // Accepted events wait for the end of the batch: a sample that completes
  // in the same batch gets one row, with its response id.
  std::map<std::pair<std::string_view, uint32_t>, const event*> accepted;
  auto offset = output_offset_.load();
  auto old_offset = offset;
  for (auto& ev : batch) {
    switch (ev.kind) {
      case event::kind_t::key:
        bind_text(key_, 1, ev.prompt_id);
        sqlite3_bind_int64(key_, 2, ev.member);
        bind_text(key_, 3, ev.key);
        if (auto err = step(key_))
          return rollback(err);
        break;
      case event::kind_t::sent:
        bind_text(sent_, 1, ev.prompt_id);
        sqlite3_bind_int64(sent_, 2, ev.member);
        bind_text(sent_, 3, ev.key);
        bind_text(sent_, 4, ev.value);
        bind_text(sent_, 5, ev.call);
        bind_text(sent_, 6, ev.version);
        if (auto err = step(sent_))
          return rollback(err);
        break;
      case event::kind_t::accepted:
        accepted[{ev.prompt_id, ev.member}] = &ev;
        break;
      case event::kind_t::completed: {
        bind_text(completed_, 1, ev.prompt_id);
        sqlite3_bind_int64(completed_, 2, ev.member);
        bind_text(completed_, 3, ev.key);
        bind_text(completed_, 4, ev.value);
        auto acc = accepted.find({ev.prompt_id, ev.member});
        if (acc != accepted.end())
          bind_text(completed_, 5, acc->second->value);
        if (auto err = step(completed_))
          return rollback(err);
        if (acc != accepted.end())
          accepted.erase(acc);
        break;
      }
      case event::kind_t::written:
        bind_text(written_, 1, ev.prompt_id);
        if (auto err = step(written_))
          return rollback(err);
        if (ev.output_end)
          offset = std::max(offset, *ev.output_end);
        break;
      case event::kind_t::offset:
        offset = *ev.output_end;
        break;
    }
  }
  for (auto& [where, ev] : accepted) {
    bind_text(accepted_, 1, ev->prompt_id);
    sqlite3_bind_int64(accepted_, 2, ev->member);
    bind_text(accepted_, 3, ev->key);
    bind_text(accepted_, 4, ev->value);
    if (auto err = step(accepted_))
      return rollback(err);
  }
  if (offset != old_offset)
    if (auto err = put_meta("output_offset", std::to_string(offset)))
      return rollback(err);
  if (auto err = exec("COMMIT"))
    return rollback(err);
  output_offset_ = offset;
  ++commits_;
  return caf::none;
}

void journal::committer_loop() {
  std::unique_lock<std::mutex> lock{mtx_};
  for (;;) {
    auto due = [this] {
      return !batch_.empty()
             && (batch_.size() >= opts_.commit_every
                 || clock_type::now() - oldest_ >= opts_.commit_interval);
    };
    while (!stop_ && requested_ == served_ && (failed_ || !due())) {
      if (batch_.empty() || failed_)
        wake_.wait(lock);
      else
        wake_.wait_until(lock, oldest_ + opts_.commit_interval);
    }
    if (stop_)
      return; // what is pending is discarded (see ~journal)
    auto target = requested_;
    if (failed_) {
      served_ = target;
      done_.notify_all();
      continue;
    }
    std::vector<event> local;
    local.swap(batch_);
    // Waiters registered while this batch is applied wait for it too (their
    // events may be in it).
    inflight_waiters_.swap(waiters_);
    applying_ = true;
    lock.unlock();
    auto err = apply(local);
    lock.lock();
    applying_ = false;
    auto waiters = std::move(inflight_waiters_);
    inflight_waiters_.clear();
    lock.unlock();
    notify(waiters, err);
    lock.lock();
    if (err) {
      failed_ = std::move(err);
      local.insert(local.end(), std::make_move_iterator(batch_.begin()),
                   std::make_move_iterator(batch_.end()));
      batch_ = std::move(local);
      auto later = std::move(waiters_);
      waiters_.clear();
      lock.unlock();
      notify(later, failed_);
      lock.lock();
    }
    served_ = target;
    done_.notify_all();
  }
}

caf::error journal::maybe_commit() {
  if (opts_.background) {
    std::lock_guard<std::mutex> guard{mtx_};
    return failed_;
  }
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (batch_.empty()
        || (batch_.size() < opts_.commit_every
            && clock_type::now() - oldest_ < opts_.commit_interval))
      return caf::none;
  }
  return commit();
}

caf::error journal::commit() {
  if (opts_.background) {
    std::unique_lock<std::mutex> lock{mtx_};
    if (failed_)
      return failed_;
    auto target = ++requested_;
    wake_.notify_one();
    done_.wait(lock, [&] { return served_ >= target; });
    return failed_;
  }
  std::vector<event> local;
  std::vector<std::function<void(const caf::error&)>> waiters;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    local.swap(batch_);
    waiters.swap(waiters_);
  }
  auto err = apply(local);
  notify(waiters, err);
  if (err) {
    // The events stay pending; a later commit may succeed.
    std::lock_guard<std::mutex> guard{mtx_};
    local.insert(local.end(), std::make_move_iterator(batch_.begin()),
                 std::make_move_iterator(batch_.end()));
    batch_ = std::move(local);
  }
  return err;
}

void journal::notify(std::vector<std::function<void(const caf::error&)>>& waiters,
                     const caf::error& err) {
  for (auto& fn : waiters)
    fn(err);
  waiters.clear();
}

void journal::when_committed(std::function<void(const caf::error&)> fn) {
  caf::error now;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!failed_ && !batch_.empty()) {
      waiters_.push_back(std::move(fn));
      return;
    }
    if (!failed_ && applying_) {
      inflight_waiters_.push_back(std::move(fn));
      return;
    }
    now = failed_;
  }
  fn(now);
}

size_t journal::pending() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return batch_.size();
}

std::optional<clock_type::duration> journal::until_due() const {
  if (opts_.background)
    return std::nullopt;
  std::lock_guard<std::mutex> guard{mtx_};
  if (batch_.empty())
    return std::nullopt;
  auto due = oldest_ + opts_.commit_interval;
  auto now = clock_type::now();
  return due > now ? due - now : clock_type::duration::zero();
}

// -- lookups ---------------------------------------------------------------------------

caf::expected<bool> journal::written(std::string_view prompt_id) {
  std::lock_guard<std::mutex> guard{db_mtx_};
  bind_text(is_written_, 1, prompt_id);
  auto rc = sqlite3_step(is_written_);
  bool result = rc == SQLITE_ROW && sqlite3_column_int(is_written_, 0) != 0;
  sqlite3_reset(is_written_);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return fail("cannot read journal");
  return result;
}

caf::expected<std::vector<sample_record>> journal::samples(std::string_view prompt_id) {
  std::lock_guard<std::mutex> guard{db_mtx_};
  std::vector<sample_record> out;
  bind_text(samples_of_, 1, prompt_id);
  int rc;
  while ((rc = sqlite3_step(samples_of_)) == SQLITE_ROW) {
    sample_record r;
    r.member = static_cast<uint32_t>(sqlite3_column_int64(samples_of_, 0));
    r.key = column_text(samples_of_, 1);
    r.response_id = column_text(samples_of_, 2);
    r.state = static_cast<sample_state>(sqlite3_column_int(samples_of_, 3));
    r.body = column_text(samples_of_, 4);
    r.request = column_text(samples_of_, 5);
    r.call = column_text(samples_of_, 6);
    r.version = column_text(samples_of_, 7);
    r.prompt_id = std::string{prompt_id};
    out.push_back(std::move(r));
  }
  sqlite3_reset(samples_of_);
  if (rc != SQLITE_DONE)
    return fail("cannot read journal");
  return out;
}

caf::expected<journal_summary> journal::summary() {
  std::lock_guard<std::mutex> guard{db_mtx_};
  journal_summary s;
  auto count = [&](const std::string& sql, uint64_t& out) -> caf::error {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
      return fail("cannot read journal");
    auto rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
      out = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? caf::none : fail("cannot read journal");
  };
  if (auto err = count("SELECT COUNT(*) FROM prompts WHERE written = 1", s.prompts_written))
    return err;
  const std::string unwritten
    = " AND NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = s.prompt_id"
      " AND p.written = 1)";
  if (auto err = count("SELECT COUNT(*) FROM samples s WHERE state = 2" + unwritten,
                       s.samples_completed))
    return err;
  if (auto err = count("SELECT COUNT(*) FROM samples s WHERE state = 1" + unwritten,
                       s.samples_accepted))
    return err;
  return s;
}

bool journal::empty() {
  std::lock_guard<std::mutex> guard{db_mtx_};
  uint64_t n = 0;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM samples LIMIT 1))"
                         " + (SELECT COUNT(*) FROM (SELECT 1 FROM prompts LIMIT 1))",
                         -1, &st, nullptr)
      == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW)
      n = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
  }
  return n == 0;
}

} // namespace sail::rollout
