// The rollout run, `sail-tinker rollout --input`: a prompts file in, a samples
// file out, an SQLite journal between (docs/operations.md "The rollout run").
// The executable parses flags into file_run_settings and prints; everything
// that makes the run resumable lives here.
//
//   auto run = sail::rollout::file_run::prepare(settings);  // input checked,
//   // journal opened or resumed, output reconciled, run row committed
//   (*run)->run(sys, completer, tick, on_progress);        // until done/stopped
//
// Threads: run() loops on the calling thread and owns the input reader, the
// samples writer and the journal (all blocking file I/O stays off CAF's
// scheduler). A driver actor (actors/rollout_driver.hpp) sends each sample to
// the completer (local runtime or cluster) and is the observer of accepted
// creates; it hands results and response ids back through a locked queue.
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
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/rollout/journal.hpp"
#include "sail_tinker/rollout/pricing.hpp"
#include "sail_tinker/rollout/prompts_file.hpp"
#include "sail_tinker/rollout/samples_file.hpp"

namespace sail::rollout {

struct file_run_settings {
  /// Prompts file, or "-" for standard input (spooled next to the output).
  std::string input;
  std::string output;
  /// Empty: no journal (no resume).
  std::string journal_path;
  /// Given by the user; default: the journal's, or a new one.
  std::optional<std::string> run_id;
  /// Discard the journal and the output first.
  bool restart = false;
  /// Write the output in input order (default: completion order).
  bool ordered = false;
  uint32_t group_size = 1;
  uint32_t concurrency = 16;
  completer_config ccfg;
  prompt_limits limits;
  /// Billed usage and cost of the run (may be null): every result's usage is
  /// added (a resume first adds the journal's results, so the totals are the
  /// whole run's), and each sample's cost goes into its output line.
  usage_ledger* ledger = nullptr;
  /// The spending cap (may be null): a prompt's members reserve their worst
  /// case before they are sent; a prompt that does not fit is not started and
  /// the run stops creating (in-flight samples finish and are recorded). A
  /// resume counts the journal's results as spent. Both outlive the run.
  budget* cap = nullptr;
};

/// A snapshot for progress displays.
struct file_run_progress {
  uint64_t prompts_done = 0;
  uint64_t prompts_total = 0;
  uint64_t samples_done = 0;
  uint64_t samples_total = 0;
  uint64_t written = 0;
  uint64_t failed = 0;
  uint64_t reattached = 0;
  uint64_t in_flight = 0;
  uint64_t arrived = 0;
  double seconds = 0;
};

/// The run's counters after run().
struct file_run_counters {
  uint64_t skipped = 0;  ///< prompts already in the output
  uint64_t written = 0;
  uint64_t ok = 0;
  uint64_t failed = 0;
  uint64_t tokens = 0;
  uint64_t arrived = 0;
  uint64_t reattached = 0;
  uint64_t from_journal = 0;
  double elapsed = 0;
  bool interrupted = false;
  /// The spending cap stopped the run: prompts were left unsent.
  bool budget_stopped = false;
  /// Samples with a result or an error, this run and earlier ones.
  uint64_t samples_done = 0;
};

class file_run {
public:
  using progress_fn = std::function<void(const file_run_progress&, bool final)>;

  /// Checks the whole input, opens (or resumes) the journal, reconciles the
  /// output with it and commits the run row. Nothing is sent.
  /// invalid_argument names what differs from the journal's run (run-id,
  /// config, input) or why the output is refused (output).
  static caf::expected<std::unique_ptr<file_run>> prepare(file_run_settings s);

  /// Closes the journal (events not committed are lost), then the output.
  ~file_run();

  file_run(const file_run&) = delete;
  file_run& operator=(const file_run&) = delete;

  const file_run_settings& settings() const noexcept {
    return s_;
  }
  const std::string& run_id() const noexcept {
    return run_id_;
  }
  const input_summary& input() const noexcept {
    return input_;
  }
  bool resuming() const noexcept {
    return resuming_;
  }
  /// The journal's state when the resume began.
  const journal_summary& before() const noexcept {
    return before_;
  }
  /// Lines found after the journal's durable offset, and the bytes of a torn
  /// last line removed, by the resume.
  uint64_t repaired_lines() const noexcept {
    return repaired_lines_;
  }
  uint64_t torn_bytes() const noexcept {
    return torn_bytes_;
  }
  /// Null without a journal.
  journal* jr() const noexcept {
    return jr_.get();
  }
  uint64_t output_size() const;

  /// Sends every prompt not yet written to `target` and writes its line;
  /// calls `progress` at least every `tick` (and once with final = true).
  /// Returns when every prompt is written, or after request_stop() once the
  /// work in flight drained (cancelled samples stay for the resume). Returns
  /// a fatal error, if any.
  caf::error run(caf::actor_system& sys, completer_actor target, std::chrono::milliseconds tick,
                 progress_fn progress);

  /// From any thread (e.g. a signal watcher): ask run() to stop.
  void request_stop();

  file_run_counters counters() const;
  /// Failed samples by error kind.
  const std::map<std::string, uint64_t>& errors_by_kind() const;
  /// Rendered first error of a failed sample (empty: none).
  const std::string& first_error() const;
  /// A bounded uniform sample of the prompts' latencies in seconds.
  const std::vector<double>& latencies() const;

  class loop;

private:
  file_run() = default;

  file_run_settings s_;
  std::unique_ptr<prompts_reader> in_;
  std::unique_ptr<samples_writer> out_;
  std::unique_ptr<journal> jr_;
  std::string run_id_;
  input_summary input_;
  bool resuming_ = false;
  journal_summary before_;
  uint64_t repaired_lines_ = 0;
  uint64_t torn_bytes_ = 0;
  std::unique_ptr<loop> loop_;
};

/// `--restart`: deletes the journal (when `journal_path` is not empty), then
/// empties the output. In this order, so that a journal that cannot go
/// leaves the output whole (acknowledged samples are not written again).
caf::error start_over(const std::string& journal_path, const std::string& output);

} // namespace sail::rollout
