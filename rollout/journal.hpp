// The rollout journal: what a sample-producing job must remember to survive
// a crash without paying for inference twice. An SQLite database in WAL mode
// (one file, plus FILE-wal while open), owned by one process at a time.
//
//   auto j = sail::rollout::journal::open("samples.jsonl.journal");
//   if (!(*j)->run()) (*j)->start_run({run_id, config_json, input_sha256, lines});
//   (*j)->on_commit([&] { return output.sync(); });     // before every commit
//   ...                                    // per sample, as things happen:
//   (*j)->record_accepted(prompt, i, key, response_id);  // Sail accepted the create
//   (*j)->record_completed(prompt, i, key, body);        // the result arrived
//   (*j)->record_written(prompt, output_end);            // its output line is appended
//   ...
//   (*j)->commit();                                      // at the end: all durable
//
// What it records:
// - the run: run id, the configuration (a canonical JSON text: what shapes a
//   request body), the input's SHA-256 and line count, and how many bytes of
//   the output file are known durable (`output_offset`);
// - per sample (prompt id, member index): its Idempotency-Key, its response
//   id once known, its state, and its completed body (Sail may expire a
//   delivered result, so the body is the only copy that surely survives);
// - per prompt: whether its output line is durable.
//
// Grouped commits. record_* only append the event to an in-memory batch
// (no disk I/O, no lock held for long). The batch is committed when it holds
// `commit_every` events or its oldest event is `commit_interval` old, or on
// commit(): the on_commit hook runs first (the rollout syncs its samples file
// there), then the events are written in one SQLite transaction, with the
// largest `output_end` of the batch as the new durable output offset. With
// `background` (the default) commits run on the journal's own thread, so the
// owner never waits for the disk; without it they run in maybe_commit() /
// commit() on the caller's thread. An accepted event whose sample completes
// in the same batch is not written separately: the completed row carries its
// response id.
//
// Crash safety: a process killed at any point loses at most the batch being
// built and the commit in progress (SQLite's WAL rolls it back); the run row
// and every earlier commit survive. Because the hook made the output durable
// before the journal records its offset, the journal never claims an output
// line that is not on disk. `synchronous=NORMAL` (default) survives a process
// crash at any point; a power loss may also roll back the last commits (never
// corrupt); set sync_full for power-loss durability of every commit.
//
// Threading: record_*, commit(), maybe_commit() and the lookups may be called
// from one owner thread (not concurrently with each other). The hook runs on
// the committer thread in background mode (a thread that blocks every
// signal, so process signals reach the application's threads). Lookups read
// the committed state:
// events recorded since the last commit are not visible to them (commit()
// first when that matters). The file is locked exclusively while open: a
// second process gets io_error.
//
// Errors: io_error (cannot open, read or write; locked by another process),
// invalid_argument (the file is not a sail-tinker journal). A failed
// background commit makes every later record_*, maybe_commit() and commit()
// return its error (the events stay uncommitted).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

struct sqlite3;
struct sqlite3_stmt;

namespace sail::rollout {

/// The identity of a run: what must not change between a run and its resume.
struct run_record {
  std::string run_id;
  /// Canonical JSON object of the settings that shape the requests.
  std::string config;
  /// SHA-256 (hex) of the input's bytes, and its number of lines.
  std::string input_sha256;
  uint64_t input_lines = 0;
};

enum class sample_state : uint8_t {
  pending = 0,    ///< key recorded (record_key), nothing else known
  accepted = 1,   ///< Sail accepted the create: response id known
  completed = 2,  ///< the result body is stored
};

struct sample_record {
  uint32_t member = 0;
  std::string key;
  std::string response_id;  ///< empty while unknown
  sample_state state = sample_state::pending;
  std::string body;         ///< the completed body (state completed)
  /// record_sent: the exact create body, the call's settings (canonical
  /// JSON) and the adapter version label; empty for the rollout run's samples.
  std::string request;
  std::string call;
  std::string version;
  /// The sample's prompt id (a trainer run: its step).
  std::string prompt_id;
  /// Sent to result in hand, when recorded (state completed).
  std::optional<int64_t> latency_ms;
};

/// Counts over the prompts whose output is not yet durable, and those that are.
struct journal_summary {
  uint64_t prompts_written = 0;
  uint64_t samples_completed = 0;  ///< body stored, prompt not written
  uint64_t samples_accepted = 0;   ///< response id known, no body, prompt not written
};

struct journal_options {
  /// Commit when this many events are pending...
  size_t commit_every = 1000;
  /// ...or when the oldest pending event is this old.
  std::chrono::milliseconds commit_interval{50};
  /// Commit on the journal's own thread.
  bool background = true;
  /// PRAGMA synchronous=FULL instead of NORMAL.
  bool sync_full = false;
};

class journal {
public:
  /// Opens (creating if missing) the journal at `path` and locks it.
  static caf::expected<std::unique_ptr<journal>> open(const std::string& path,
                                                      journal_options opts = {});

  /// Deletes a journal (the file and its -wal/-shm companions); a missing
  /// file is not an error.
  static caf::error remove(const std::string& path);

  /// Stops the committer (a commit in progress finishes) and closes. Events
  /// not committed are discarded: commit() explicitly before, after the
  /// output they describe is durable.
  ~journal();

  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  const std::string& path() const noexcept {
    return path_;
  }

  // -- the run -------------------------------------------------------------------

  /// The run this journal belongs to; nullopt for a new journal.
  const std::optional<run_record>& run() const noexcept {
    return run_;
  }

  /// Commits what is pending, then records the run and commits at once:
  /// every key derived from the run id is thereby journaled before its first
  /// create.
  caf::error start_run(const run_record& r);

  /// Bytes of the output file known durable (0 for a new journal), as of the
  /// last commit.
  uint64_t output_offset() const noexcept {
    return output_offset_.load();
  }

  /// Sets the durable output offset at the next commit (e.g. after a repair).
  caf::error set_output_offset(uint64_t offset);

  // -- events (grouped into the next commit) ------------------------------------------

  /// Write-ahead of a key (for callers whose keys are not derivable).
  caf::error record_key(std::string_view prompt_id, uint32_t member, std::string_view key);

  /// Write-ahead of a create: its key, exactly the bytes to be sent, the
  /// call's settings and the adapter version label (a trainer run). Pair it
  /// with when_committed() to send only once it is durable.
  caf::error record_sent(std::string_view prompt_id, uint32_t member, std::string_view key,
                         std::string_view request, std::string_view call,
                         std::string_view version);

  /// Sail accepted the create of this sample under `response_id`.
  caf::error record_accepted(std::string_view prompt_id, uint32_t member,
                             std::string_view key, std::string_view response_id);

  /// The sample's result body (kept with its response id, if known), and
  /// how long it took from sending to its result (for the report).
  caf::error record_completed(std::string_view prompt_id, uint32_t member,
                              std::string_view key, std::string_view body,
                              std::optional<int64_t> latency_ms = std::nullopt);

  /// The prompt's output line is appended and ends at byte `output_end` of
  /// the output (durable once the hook synced it, at the next commit).
  caf::error record_written(std::string_view prompt_id,
                            std::optional<uint64_t> output_end = std::nullopt);

  // -- lookups (the committed state) ---------------------------------------------------

  caf::expected<bool> written(std::string_view prompt_id);

  /// The recorded samples of a prompt, by member index.
  caf::expected<std::vector<sample_record>> samples(std::string_view prompt_id);

  caf::expected<journal_summary> summary();

  /// Calls `fn(prompt_id, record)` for every completed sample (written or
  /// not), in (prompt id, member) order, with its body, latency, call
  /// settings and version label (not its request): what a resume's totals
  /// and the report read the billed usage from.
  caf::error for_each_completed(
    const std::function<void(const std::string&, const sample_record&)>& fn);

  /// Samples of written prompts that have a row but no result: the failures
  /// the journal knows of (a sample refused before Sail accepted it has no
  /// row).
  caf::expected<uint64_t> failed_written();

  /// True if no sample or prompt was ever committed (lookups can be skipped).
  bool empty();

  // -- commits ------------------------------------------------------------------------

  /// Runs before every commit that has events (e.g. sync the output file).
  /// An error aborts that commit (the error becomes sticky). Set it before
  /// the first event.
  void on_commit(std::function<caf::error()> hook);

  /// Background: the error of a failed commit, if any. Otherwise: commits
  /// if commit_every events are pending or the oldest is due.
  caf::error maybe_commit();

  /// Commits every event recorded so far and waits for it.
  caf::error commit();

  /// Calls `fn` once every event recorded so far is committed (on the
  /// committer thread in background mode, with the commit's error if it
  /// failed; at once when nothing is pending). Keep `fn` short.
  void when_committed(std::function<void(const caf::error&)> fn);

  /// Events not yet committed.
  size_t pending() const;

  /// Without background: time until maybe_commit() would commit; nullopt
  /// when nothing is pending or commits run in the background.
  std::optional<std::chrono::steady_clock::duration> until_due() const;

  /// Commits made so far (the run row's included).
  uint64_t commits() const noexcept {
    return commits_.load();
  }

private:
  struct event {
    enum class kind_t : uint8_t { key, accepted, completed, written, offset, sent };
    kind_t kind;
    std::string prompt_id;
    uint32_t member = 0;
    std::string key;
    std::string value;  ///< response id or body
    std::optional<uint64_t> output_end;
    std::string call;     ///< sent: the call's settings
    std::string version;  ///< sent: the adapter version label
    std::optional<int64_t> latency_ms;  ///< completed
  };

  journal(std::string path, journal_options opts);

  caf::error init();
  caf::error exec(const char* sql);
  caf::error fail(const char* what);
  sqlite3_stmt* prepare(const char* sql);
  caf::error load_meta();
  bool has_column(const char* table, const char* column);
  caf::error put_meta(std::string_view name, std::string_view value);
  caf::error step(sqlite3_stmt* st);
  caf::error add(event ev);
  /// Hook, then the events in one transaction. Called without mtx_.
  caf::error apply(std::vector<event>& batch);
  /// Runs the waiters taken with a batch.
  static void notify(std::vector<std::function<void(const caf::error&)>>& waiters,
                     const caf::error& err);
  void committer_loop();

  std::string path_;
  journal_options opts_;
  sqlite3* db_ = nullptr;
  std::optional<run_record> run_;
  std::atomic<uint64_t> output_offset_{0};
  std::atomic<uint64_t> commits_{0};
  std::function<caf::error()> hook_;
  std::vector<sqlite3_stmt*> stmts_;
  sqlite3_stmt* key_ = nullptr;
  sqlite3_stmt* accepted_ = nullptr;
  sqlite3_stmt* sent_ = nullptr;
  sqlite3_stmt* completed_ = nullptr;
  sqlite3_stmt* written_ = nullptr;
  sqlite3_stmt* is_written_ = nullptr;
  sqlite3_stmt* samples_of_ = nullptr;
  sqlite3_stmt* meta_put_ = nullptr;
  /// Guards the connection (committer vs lookups).
  std::mutex db_mtx_;
  /// Guards the batch and the committer's state.
  mutable std::mutex mtx_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<event> batch_;
  /// when_committed() callbacks of the events in batch_, and of the batch
  /// being applied (applying_).
  std::vector<std::function<void(const caf::error&)>> waiters_;
  std::vector<std::function<void(const caf::error&)>> inflight_waiters_;
  bool applying_ = false;
  std::chrono::steady_clock::time_point oldest_;
  uint64_t requested_ = 0;  ///< commit() requests made
  uint64_t served_ = 0;     ///< requests the committer has finished
  caf::error failed_;       ///< sticky error of a background commit
  bool stop_ = false;
  std::thread committer_;
};

} // namespace sail::rollout
