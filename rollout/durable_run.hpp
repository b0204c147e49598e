// A durable run: the journal of a training loop's samples, so that a trainer
// killed mid-step and started again pays for no sample twice
// (docs/architecture.md "Durable runs", docs/operations.md).
//
//   auto run = sail::rollout::durable_run::open("run.journal");   // or (path, id)
//   auto c = sail::spawn_durable_completer(sys, completer, cfg, *run, "step-3");
//   ... sample through `c` exactly as through any completer ...
//
// The journal is the rollout journal (journal.hpp): one row per call, its
// prompt id the step, its member the call's slot in the step. Per call it
// holds the Idempotency-Key, the exact create body (written and committed
// before the create is sent), the call's settings (whole in the first row of
// the step that has them, later as "#" + 16 hex digits of their SHA-256),
// the adapter version label, the response id once Sail accepted the create,
// and the result.
//
// Keys. key = "st2-" + hex SHA-256("sail-tinker/run/v1" | len:run id |
// len:step | fingerprint | occurrence), where the fingerprint is the SHA-256
// of the call's settings (model, completion_window, temperature, top_p,
// effective max_tokens, request_logprobs, adapter identity, metadata), its
// prompt tokens and its stop condition, and the occurrence counts identical
// calls within the step in call order (0, 1, ...). A sample_group of n is n
// calls in member order. The adapter identity is the Tinker checkpoint path,
// the LoRA name, or a signed URL without its query (never the signature).
//
// Resume, per call: a stored result is answered from the journal (no
// request); a known response id is attached (polled); a journaled body
// without a response id is re-sent byte-identical under its key (Sail
// replays it); anything else is a fresh create.
//
// Mismatch: the n-th call of a step is compared with the n-th call the
// journal holds for that step; other settings (model, window, parameters,
// adapter) are invalid_argument naming the setting, and nothing is sent.
//
// Thread-safe: completers of several steps (actors on any thread) and the
// owner share one run.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/rollout/journal.hpp"

namespace sail::rollout {

/// Where a call's result comes from.
enum class call_source : uint8_t {
  fresh,     ///< never sent: encode, journal, then create
  journal,   ///< the journal holds its result: no request
  reattach,  ///< Sail accepted it: poll the journaled response id
  resend,    ///< journaled but unanswered: re-send the journaled body
};

/// What one call of a step does.
struct call_plan {
  call_source source = call_source::fresh;
  std::string key;
  uint32_t slot = 0;
  /// reattach / resend: the journaled create body.
  std::string request;
  /// reattach: the journaled response id.
  std::string response_id;
  /// journal: the result (format_result text).
  std::string result;
};

/// Per step: where its calls' results came from.
struct step_stats {
  uint64_t fresh = 0;
  uint64_t from_journal = 0;
  uint64_t reattached = 0;
  uint64_t resent = 0;
  uint64_t failed = 0;
};

/// The settings of a call that shape its body (canonical JSON), without the
/// prompt and the stop condition. `max_tokens` is the effective cap.
std::string call_settings(const completer_config& cfg, int64_t max_tokens);

/// How a journal row refers to settings held whole by an earlier row of its
/// step ("#" + 16 hex digits of their SHA-256): a row's `call` column holds
/// either the settings or this reference.
std::string settings_ref(std::string_view settings);

/// The adapter identity of a configuration: the Tinker checkpoint path, the
/// Tinker LoRA name, the LoRA name, or the signed URL without its query;
/// empty for the base model.
std::string adapter_identity(const completer_config& cfg);

/// SHA-256 (hex) of the settings, the prompt tokens and the stop condition.
std::string call_fingerprint(const std::string& settings, const sample_request& req);

/// The Idempotency-Key of the occurrence-th call with this fingerprint in
/// step `step` of run `run_id`.
std::string call_key(std::string_view run_id, std::string_view step,
                     std::string_view fingerprint, uint32_t occurrence);

/// The inverse of format_result (samples_file.hpp): a journaled result.
caf::expected<tokens_with_logprobs> parse_result(std::string_view text);

class durable_run {
public:
  /// Trainer defaults: commits every 5 ms (a fresh create waits for one).
  static journal_options default_journal_options();

  /// Opens or creates the run's journal at `path`. A new journal takes
  /// `run_id` (default: a generated one); an existing one keeps its id
  /// (invalid_argument naming run_id if `run_id` differs, or if the file is
  /// a `rollout --input` journal). `opts.background` must hold (durable
  /// fronts send once the committer thread reports the commit):
  /// invalid_argument naming `background` otherwise.
  static caf::expected<std::shared_ptr<durable_run>>
  open(const std::string& path, std::optional<std::string> run_id = std::nullopt,
       journal_options opts = default_journal_options());

  /// Commits and closes (close()).
  ~durable_run();

  durable_run(const durable_run&) = delete;
  durable_run& operator=(const durable_run&) = delete;

  const std::string& id() const noexcept {
    return id_;
  }
  const std::string& path() const noexcept {
    return path_;
  }

  /// The next call of `step` (settings + fingerprint from the functions
  /// above): its key, its slot and where its result comes from.
  /// invalid_argument naming the setting that differs from the journal's
  /// call at the same position; cancelled once closed.
  caf::expected<call_plan> plan(const std::string& step, const std::string& settings,
                                const std::string& fingerprint);

  /// Write-ahead of a fresh call (durable at the next commit: when_committed).
  caf::error record_sent(const std::string& step, uint32_t slot, const std::string& key,
                         const std::string& request, const std::string& settings,
                         const std::string& version);

  /// `then` runs (on the journal's thread: keep it short) once everything
  /// recorded so far is durable, with the commit's error if any.
  void when_committed(std::function<void(const caf::error&)> then);

  /// Sail accepted the call's create under `response_id`.
  void record_accepted(const std::string& step, uint32_t slot, const std::string& key,
                       const std::string& response_id);

  /// The call's result arrived.
  void record_completed(const std::string& step, uint32_t slot, const std::string& key,
                        const tokens_with_logprobs& result);

  /// The call failed (counted; the journal keeps what it had).
  void record_failed(const std::string& step);

  /// Per step, in step order (as strings).
  std::map<std::string, step_stats> stats() const;

  // -- a step sampler's bookkeeping (actors/step_sampler.hpp) ---------------------

  /// The trainer acknowledged the delivery of the calls of `label` (a
  /// sampler's group) in trainer step `step`; `then` runs (on the journal's
  /// thread) once that is durable. Kept as a key row of the reserved step
  /// "delivered/<label>".
  void record_delivered(const std::string& label, uint64_t step,
                        std::function<void(const caf::error&)> then);

  /// The committed delivery step of `label`, or nullopt.
  caf::expected<std::optional<uint64_t>> delivered(const std::string& label);

  /// The committed calls of `step` (journal rows, by slot).
  caf::expected<std::vector<sample_record>> calls(const std::string& step);

  /// Commits everything recorded and closes the journal; later calls fail
  /// with `cancelled`. Idempotent.
  caf::error close();

  bool closed() const;

private:
  struct slot_info {
    /// The journal's call settings (empty for calls of this process: the
    /// mismatch check is against the journal).
    std::string settings;
  };
  struct known_call {
    uint32_t slot = 0;
    sample_state state = sample_state::pending;
    std::string request;
    std::string response_id;
    std::string result;
  };
  struct step_state {
    bool loaded = false;
    /// Calls made in this process (the position of the next one).
    uint32_t position = 0;
    uint32_t next_slot = 0;
    std::map<uint32_t, slot_info> slots;
    std::unordered_map<std::string, known_call> calls;
    std::unordered_map<std::string, uint32_t> occurrences;
    /// Settings written to the journal for this step by this process, with
    /// their reference ("#" + 16 hex of their SHA-256): the first row of a
    /// step with some settings holds them whole, later rows the reference.
    std::unordered_map<std::string, std::string> written_settings;
    step_stats stats;
  };

  durable_run() = default;

  caf::error load(const std::string& step, step_state& st);

  std::string path_;
  std::string id_;
  mutable std::mutex mtx_;
  std::unique_ptr<journal> jr_;
  std::map<std::string, step_state> steps_;
};

using run_handle = std::shared_ptr<durable_run>;  // as in actors/durable_options.hpp

} // namespace sail::rollout
