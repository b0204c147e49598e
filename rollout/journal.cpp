#include "sail_tinker/rollout/journal.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include <sqlite3.h>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/failpoint.hpp"

namespace sail::rollout {

namespace {

constexpr const char* schema_version = "1";

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
  if (db_ != nullptr) {
    if (in_tx_)
      static_cast<void>(exec("ROLLBACK"));
    accepted_buf_.clear();
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
  completed_ = prepare(
    "INSERT INTO samples(prompt_id, member, key, state, body, response_id) "
    "VALUES(?1, ?2, ?3, 2, ?4, ?5) "
    "ON CONFLICT(prompt_id, member) DO UPDATE SET key = excluded.key, state = 2, "
    "body = excluded.body, response_id = COALESCE(excluded.response_id, response_id)");
  written_ = prepare("INSERT INTO prompts(prompt_id, written) VALUES(?1, 1) "
                     "ON CONFLICT(prompt_id) DO UPDATE SET written = 1");
  is_written_ = prepare("SELECT written FROM prompts WHERE prompt_id = ?1");
  samples_of_ = prepare("SELECT member, key, response_id, state, body FROM samples "
                        "WHERE prompt_id = ?1 ORDER BY member");
  meta_put_ = prepare("INSERT INTO meta(name, value) VALUES(?1, ?2) "
                      "ON CONFLICT(name) DO UPDATE SET value = excluded.value");
  for (auto* st : {key_, accepted_, completed_, written_, is_written_, samples_of_, meta_put_})
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
  if (meta.empty())
    return caf::none; // a new journal
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

caf::error journal::begin_event() {
  if (!in_tx_) {
    if (auto err = exec("BEGIN"))
      return err;
    in_tx_ = true;
    oldest_ = clock_type::now();
  }
  ++pending_;
  return caf::none;
}

caf::error journal::put_meta(std::string_view name, std::string_view value) {
  bind_text(meta_put_, 1, name);
  bind_text(meta_put_, 2, value);
  auto rc = sqlite3_step(meta_put_);
  sqlite3_reset(meta_put_);
  sqlite3_clear_bindings(meta_put_);
  return rc == SQLITE_DONE ? caf::none : fail("cannot write journal");
}

caf::error journal::start_run(const run_record& r) {
  if (auto err = begin_event())
    return err;
  for (auto [name, value] : {std::pair<std::string_view, std::string>{"schema", schema_version},
                             {"run_id", r.run_id},
                             {"config", r.config},
                             {"input_sha256", r.input_sha256},
                             {"input_lines", std::to_string(r.input_lines)},
                             {"output_offset", std::to_string(output_offset_)}})
    if (auto err = put_meta(name, value))
      return err;
  if (auto err = commit())
    return err;
  run_ = r;
  return caf::none;
}

caf::error journal::set_output_offset(uint64_t offset) {
  if (auto err = begin_event())
    return err;
  --pending_; // bookkeeping, not an event of its own
  if (auto err = put_meta("output_offset", std::to_string(offset)))
    return err;
  output_offset_ = offset;
  return caf::none;
}

caf::error journal::record_key(std::string_view prompt_id, uint32_t member,
                               std::string_view key) {
  if (auto err = begin_event())
    return err;
  bind_text(key_, 1, prompt_id);
  sqlite3_bind_int64(key_, 2, member);
  bind_text(key_, 3, key);
  auto rc = sqlite3_step(key_);
  sqlite3_reset(key_);
  return rc == SQLITE_DONE ? caf::none : fail("cannot write journal");
}

caf::error journal::record_accepted(std::string_view prompt_id, uint32_t member,
                                    std::string_view key, std::string_view response_id) {
  if (auto err = begin_event())
    return err;
  accepted_buf_[{std::string{prompt_id}, member}] = {std::string{key},
                                                     std::string{response_id}};
  return caf::none;
}

caf::error journal::write_accepted(std::string_view prompt_id, uint32_t member,
                                   std::string_view key, std::string_view response_id) {
  bind_text(accepted_, 1, prompt_id);
  sqlite3_bind_int64(accepted_, 2, member);
  bind_text(accepted_, 3, key);
  bind_text(accepted_, 4, response_id);
  auto rc = sqlite3_step(accepted_);
  sqlite3_reset(accepted_);
  return rc == SQLITE_DONE ? caf::none : fail("cannot write journal");
}

caf::error journal::flush_accepted() {
  for (auto& [where, what] : accepted_buf_)
    if (auto err = write_accepted(where.first, where.second, what.first, what.second))
      return err;
  accepted_buf_.clear();
  return caf::none;
}

caf::error journal::record_completed(std::string_view prompt_id, uint32_t member,
                                     std::string_view key, std::string_view body) {
  if (auto err = begin_event())
    return err;
  bind_text(completed_, 1, prompt_id);
  sqlite3_bind_int64(completed_, 2, member);
  bind_text(completed_, 3, key);
  bind_text(completed_, 4, body);
  auto buffered = accepted_buf_.find({std::string{prompt_id}, member});
  if (buffered != accepted_buf_.end())
    bind_text(completed_, 5, buffered->second.second);
  else
    sqlite3_bind_null(completed_, 5);
  auto rc = sqlite3_step(completed_);
  sqlite3_reset(completed_);
  if (buffered != accepted_buf_.end())
    accepted_buf_.erase(buffered);
  return rc == SQLITE_DONE ? caf::none : fail("cannot write journal");
}

caf::error journal::record_written(std::string_view prompt_id) {
  if (auto err = begin_event())
    return err;
  bind_text(written_, 1, prompt_id);
  auto rc = sqlite3_step(written_);
  sqlite3_reset(written_);
  return rc == SQLITE_DONE ? caf::none : fail("cannot write journal");
}

caf::expected<bool> journal::written(std::string_view prompt_id) {
  bind_text(is_written_, 1, prompt_id);
  auto rc = sqlite3_step(is_written_);
  bool result = rc == SQLITE_ROW && sqlite3_column_int(is_written_, 0) != 0;
  sqlite3_reset(is_written_);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return fail("cannot read journal");
  return result;
}

caf::expected<std::vector<sample_record>> journal::samples(std::string_view prompt_id) {
  if (auto err = flush_accepted())
    return err;
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
    out.push_back(std::move(r));
  }
  sqlite3_reset(samples_of_);
  if (rc != SQLITE_DONE)
    return fail("cannot read journal");
  return out;
}

caf::expected<journal_summary> journal::summary() {
  if (auto err = flush_accepted())
    return err;
  journal_summary s;
  auto count = [&](const char* sql, uint64_t& out) -> caf::error {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK)
      return fail("cannot read journal");
    auto rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
      out = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? caf::none : fail("cannot read journal");
  };
  if (auto err = count("SELECT COUNT(*) FROM prompts WHERE written = 1", s.prompts_written))
    return err;
  constexpr const char* unwritten
    = " AND NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = s.prompt_id"
      " AND p.written = 1)";
  if (auto err = count((std::string{"SELECT COUNT(*) FROM samples s WHERE state = 2"} + unwritten)
                         .c_str(),
                       s.samples_completed))
    return err;
  if (auto err = count((std::string{"SELECT COUNT(*) FROM samples s WHERE state = 1"} + unwritten)
                         .c_str(),
                       s.samples_accepted))
    return err;
  return s;
}

bool journal::empty() {
  if (!accepted_buf_.empty())
    return false;
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

std::optional<clock_type::duration> journal::until_due() const {
  if (!in_tx_ || pending_ == 0)
    return std::nullopt;
  auto due = oldest_ + opts_.commit_interval;
  auto now = clock_type::now();
  return due > now ? due - now : clock_type::duration::zero();
}

caf::error journal::maybe_commit() {
  if (!in_tx_)
    return caf::none;
  if (pending_ >= opts_.commit_every
      || clock_type::now() - oldest_ >= opts_.commit_interval)
    return commit();
  return caf::none;
}

caf::error journal::commit() {
  if (!in_tx_)
    return caf::none;
  if (auto err = flush_accepted())
    return err;
  if (hook_)
    if (auto err = hook_())
      return err;
  if (auto err = exec("COMMIT"))
    return err;
  in_tx_ = false;
  pending_ = 0;
  ++commits_;
  return caf::none;
}

} // namespace sail::rollout
