// The rollout journal: what a sample-producing job must remember to survive
// a crash without paying for inference twice. An SQLite database in WAL mode
// (one file, plus FILE-wal while open), owned by one process at a time.
//
//   auto j = sail::rollout::journal::open("samples.jsonl.journal");
//   if (!(*j)->run()) (*j)->start_run({run_id, config_json, input_sha256, lines});
//   ...                                    // per sample, as things happen:
//   (*j)->record_accepted(prompt, i, key, response_id);  // Sail accepted the create
//   (*j)->record_completed(prompt, i, key, body);        // the result arrived
//   (*j)->record_written(prompt);                        // its output is durable
//   (*j)->maybe_commit();                                // grouped commit
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
// Commits are grouped: events go into one open transaction that commits when
// `commit_every` events are pending or the oldest is `commit_interval` old
// (maybe_commit), or on commit(). An accepted event waits in memory until
// the commit: a sample that completes before it is written once, with its
// response id, instead of twice (the durability is the same: nothing is
// durable before the commit). A hook (on_commit) runs before each commit;
// the rollout syncs its samples file there and stores the synced size with
// set_output_offset, so the journal never claims an output line that is not on
// disk. Killing the process at any point loses at most the open transaction:
// SQLite's WAL rolls it back, the run row and every earlier commit survive.
// `synchronous=NORMAL` (default) survives a process crash at any point; a
// power loss may also roll back the last commits (never corrupt); set
// sync_full for power-loss durability of every commit.
//
// Threading: not thread-safe. One owner calls it; every call may block on
// the disk (do not call it from an actor handler on a hot path). The file is
// locked exclusively while open: a second process gets io_error.
//
// Errors: io_error (cannot open, read or write; locked by another process),
// invalid_argument (the file is not a sail-tinker journal).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
  /// ...or when the oldest pending event is this old (checked by maybe_commit).
  std::chrono::milliseconds commit_interval{50};
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

  /// Closes. Pending events that were not committed are discarded (rolled
  /// back): commit() explicitly before, after the output they describe is
  /// durable.
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

  /// Records the run and commits at once (with anything pending): every key
  /// derived from the run id is thereby journaled before its first create.
  caf::error start_run(const run_record& r);

  /// Bytes of the output file known durable (0 for a new journal).
  uint64_t output_offset() const noexcept {
    return output_offset_;
  }

  /// Stores a new durable output size in the open transaction.
  caf::error set_output_offset(uint64_t offset);

  // -- events (grouped into the open transaction) ---------------------------------

  /// Write-ahead of a key (for callers whose keys are not derivable).
  caf::error record_key(std::string_view prompt_id, uint32_t member, std::string_view key);

  /// Sail accepted the create of this sample under `response_id`.
  caf::error record_accepted(std::string_view prompt_id, uint32_t member,
                             std::string_view key, std::string_view response_id);

  /// The sample's result body (kept with its response id, if known).
  caf::error record_completed(std::string_view prompt_id, uint32_t member,
                              std::string_view key, std::string_view body);

  /// The prompt's output is written (durable at the next commit, after the
  /// on_commit hook synced it).
  caf::error record_written(std::string_view prompt_id);

  // -- lookups (see pending events too) ----------------------------------------------

  caf::expected<bool> written(std::string_view prompt_id);

  /// The recorded samples of a prompt, by member index.
  caf::expected<std::vector<sample_record>> samples(std::string_view prompt_id);

  caf::expected<journal_summary> summary();

  /// True if no sample or prompt was ever recorded (lookups can be skipped).
  bool empty();

  // -- commits ------------------------------------------------------------------------

  /// Runs before every commit that has pending events (e.g. sync the output
  /// file, then set_output_offset). An error aborts the commit (the events
  /// stay pending).
  void on_commit(std::function<caf::error()> hook) {
    hook_ = std::move(hook);
  }

  /// Commits if commit_every events are pending or the oldest is due.
  caf::error maybe_commit();

  /// Commits every pending event now.
  caf::error commit();

  /// Events in the open transaction.
  size_t pending() const noexcept {
    return pending_;
  }

  /// Time until maybe_commit() would commit; nullopt when nothing is pending.
  std::optional<std::chrono::steady_clock::duration> until_due() const;

  /// Commits made so far by this object.
  uint64_t commits() const noexcept {
    return commits_;
  }

private:
  journal(std::string path, journal_options opts);

  caf::error init();
  caf::error exec(const char* sql);
  caf::error fail(const char* what);
  caf::error begin_event();
  sqlite3_stmt* prepare(const char* sql);
  caf::error load_meta();
  caf::error put_meta(std::string_view name, std::string_view value);
  caf::error write_accepted(std::string_view prompt_id, uint32_t member, std::string_view key,
                            std::string_view response_id);
  caf::error flush_accepted();

  std::string path_;
  journal_options opts_;
  sqlite3* db_ = nullptr;
  std::optional<run_record> run_;
  uint64_t output_offset_ = 0;
  bool in_tx_ = false;
  size_t pending_ = 0;
  std::chrono::steady_clock::time_point oldest_;
  uint64_t commits_ = 0;
  std::function<caf::error()> hook_;
  std::vector<sqlite3_stmt*> stmts_;
  sqlite3_stmt* key_ = nullptr;
  sqlite3_stmt* accepted_ = nullptr;
  sqlite3_stmt* completed_ = nullptr;
  sqlite3_stmt* written_ = nullptr;
  sqlite3_stmt* is_written_ = nullptr;
  sqlite3_stmt* samples_of_ = nullptr;
  sqlite3_stmt* meta_put_ = nullptr;
  /// Accepted events not yet written: (prompt id, member) -> (key, response id).
  std::map<std::pair<std::string, uint32_t>, std::pair<std::string, std::string>> accepted_buf_;
};

} // namespace sail::rollout
