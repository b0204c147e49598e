// `sail-tinker doctor` / `sail_tinker.doctor()`: checks the unpublished wire
// details (net/wire_options.hpp; docs/wire-contract.md A1-A3, D1-D4) against
// a Sail endpoint with a handful of tiny samples, and finds the [wire]
// settings that work there.
//
// Without `spend` nothing is sent: the report states the worst case (how
// many samples, prompt and output tokens) and stops. With it, the samples
// are (each with `prompt` as prompt, at most `max_tokens` output tokens,
// temperature 0 so that the model repeats itself):
//   1. the baseline: no stop, logprobs requested the configured way; on a
//      refusal or without logprobs, the other logprobs switches (at most 2
//      more samples). Its response checks the layout (D1-D4): read the
//      configured way, else another layout that finds the output there
//      ("elsewhere").
//   2. the stop probe: the baseline's prompt with a stop token the baseline
//      met; it holds when the output ends at it. Otherwise the other stop
//      field (at most 1 more sample).
//   3. with a Tinker path: the TTL call, the archive call (signed URL) and
//      one LoRA sample through that URL under the configured key names.
// Keys and signed URLs' query strings never appear in the report.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/net/http_client.hpp"
#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/net/wire_options.hpp"

namespace sail {

struct doctor_options {
  /// Sail endpoint (as the runtime resolves it) and key.
  std::string base_url;
  std::string api_key;
  http_client_options http;
  /// The settings checked (the configured [wire] group).
  wire_options wire;
  /// The built-in model table's one model and the completer's default
  /// window (docs/wire-contract.md, "Every choice and its source").
  std::string model = "moonshotai/Kimi-K2.6";
  std::string completion_window = completer_config{}.completion_window;
  std::vector<int64_t> prompt{1, 2, 3};
  int64_t max_tokens = 8;
  /// Bound of one sample (create + polls).
  caf::timespan sample_timeout = std::chrono::minutes(15);
  /// Check the Tinker calls and a LoRA sample (empty: not checked).
  std::string tinker_path;
  std::string tinker_base_url;
  std::string tinker_api_key;
  /// The LoRA sample's adapter config (a JSON object).
  std::string adapter_config;
  int64_t ttl_seconds = 3600;
  /// Send samples (false: only state the worst case).
  bool spend = false;

  /// invalid_argument naming the field: empty base URL, key or model;
  /// prompt empty, over 16 tokens or a token outside 0..2147483647;
  /// max_tokens outside 1..8; a Tinker path without a Tinker key or adapter
  /// config; bad wire options.
  caf::error validate() const;

  /// Samples sent at most.
  int max_samples() const;
};

/// What the doctor found about one assumption.
struct doctor_check {
  std::string id;       ///< "A1", "A2", "D1-D4", "A3", "tinker-ttl", "tinker-archive"
  std::string name;     ///< what it is about, in words
  std::string setting;  ///< the [wire] key ("wire.stop-field"), empty if none
  std::string checked;  ///< the configured value checked
  /// held | refused | ignored | elsewhere | failed | not_checked
  std::string verdict;
  std::string detail;
  unsigned status = 0;  ///< refused / failed: the HTTP status (0: none)
  std::string body;     ///< refused / failed: the body, secrets redacted, cut
  std::string working;  ///< the value that works; empty: none found
};

struct doctor_report {
  bool sent = false;
  int max_samples = 0;
  int64_t max_prompt_tokens = 0;
  int64_t max_output_tokens = 0;
  int samples_sent = 0;
  std::vector<doctor_check> checks;
  wire_options configured;
  /// The configured settings with every recommendation applied.
  wire_options working;
  /// Every check held (the configured settings work).
  bool holds = false;

  /// The report for a terminal: the budget, one line per check, and the
  /// working [wire] group ready to paste.
  std::string to_text() const;
  /// The same as one JSON object (the Python dict).
  std::string to_json() const;
};

/// Runs the doctor. Errors: invalid_argument (bad options); transport or
/// HTTP failures of a sample are reported in the checks, not as errors.
caf::expected<doctor_report> run_doctor(const doctor_options& opts);

} // namespace sail
