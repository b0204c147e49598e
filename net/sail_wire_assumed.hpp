// The ASSUMED part of the Sail raw-token wire format, in one place.
//
// Sail has not published these details (docs/wire-contract.md marks
// them ASSUMED). Everything the project guesses about the wire lives in the
// encoder/decoder pair below, so that a correction touches only this header
// and sail_wire_assumed.cpp:
//
//   Encoder (create body):
//   A1. `stop` carries the stop condition as the seed normalises it: token
//       ids as a list ([198]; a single int becomes a one-element list), a
//       bare string as a string ("\n\n"), a list of strings as a list
//       (["\n\n"]); absent when no stop is set. The field name is ASSUMED.
//   A2. `include: ["message.output_text.logprobs"]` requests logprobs; absent
//       when the completer does not request them.
//   A3. LoRA keys inside `metadata`, after completion_window and in this
//       order: `lora` (seen used against the live API), then the Tinker keys
//       `tinker_lora_signed_url`, `adapter_config` (the adapter config object
//       serialized into a JSON *string*, normalised by
//       normalize_adapter_config) and `tinker_lora_name`.
//
//   Decoder (completed/incomplete response):
//   D1. Layout: OpenAI Responses shape. `output` is an array of items (a single
//       object is accepted as a one-item array); each item may carry a
//       `content` array of parts; the sample is the FIRST part with
//       `type == "output_text"` across all items, in order.
//   D2. The part's `token_ids`: an array of JSON integers in 0..2147483647
//       (1.0, 1.5, "1", -1 and 2147483648 are all rejected).
//   D3. The part's `logprobs`: absent or null -> none; otherwise an array, one
//       entry per token, each a JSON number or an object with a numeric
//       `logprob` (OpenAI's shape); every value finite.
//   D4. stop_reason: the part's `stop_reason`, else the response's
//       `stop_reason`, else "length" when `incomplete_details.reason` is
//       "max_output_tokens", else the response `status`, else "unknown".
//       Only non-empty strings count at each step.
//   D5. `completed_at` (any response): when Sail completed it, in seconds
//       since the epoch (a JSON number, integer or fractional), as OpenAI's
//       Responses object carries it; absent from Sail's OpenAPI document.
//       Used only to measure notice delay; anything else is ignored.
//
// A1-A3 and D1-D4 are switchable (net/wire_options.hpp, the [wire] group):
// the defaults are the choices above; the encoder and decoder read the
// chosen variant.
#pragma once

#include <optional>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/net/wire_options.hpp"

namespace sail::wire_assumed {

/// Minimal append-only JSON writer for request bodies: compact output, no
/// whitespace, keys and values written in exactly the order of the calls.
/// Deterministic by construction, so equal inputs give byte-identical bodies.
class json_out {
public:
  explicit json_out(std::string& buf) : buf_(buf) {
  }

  std::string& buf() noexcept {
    return buf_;
  }

  void raw(std::string_view text) {
    buf_.append(text);
  }

  void put(char c) {
    buf_.push_back(c);
  }

  /// Writes a JSON string literal (quotes, escapes for '"', '\\' and control
  /// characters; all other bytes verbatim).
  void string(std::string_view text);

  /// Writes `"name":` (preceded by a comma unless `first`).
  void key(std::string_view name, bool first = false) {
    if (!first)
      buf_.push_back(',');
    string(name);
    buf_.push_back(':');
  }

  void integer(int64_t value) {
    char tmp[24];
    auto res = std::to_chars(tmp, tmp + sizeof(tmp), value);
    buf_.append(tmp, res.ptr);
  }

  /// Writes a finite double in its shortest round-trip form; integral values
  /// keep a ".0" (1.0, not 1) so the field reads as a float. The caller
  /// guarantees finiteness.
  void number(double value);

  /// Writes `[a,b,...]` of integers. Fast path for big prompts: reserves the
  /// worst case once and writes digits in place.
  void integer_array(const std::vector<int64_t>& values);

private:
  std::string& buf_;
};

/// A1-A3: the encoder half.
struct encoder {
  /// Appends `,"stop":[...]` (A1, when a stop is set) and
  /// `,"include":["message.output_text.logprobs"]` (A2, when requested);
  /// with other `wire` choices, `stop_token_ids` / nothing, and
  /// `"logprobs":true` / nothing.
  static void stop_and_include(json_out& out, const stop_condition& stop,
                               bool request_logprobs,
                               const wire_options& wire = default_wire());

  /// Appends the LoRA keys of the metadata object (A3, under `wire`'s key
  /// names), each preceded by a comma. Fails with invalid_argument (field
  /// "adapter_config") when the adapter config is not a JSON object.
  static caf::error lora_metadata(json_out& out, const completer_config& cfg,
                                  const wire_options& wire = default_wire());
};

/// inference_error with the offending response body attached (redacted by
/// make_error; a body over max_attached_body bytes is cut, with a marker).
caf::error response_error(std::string message, std::string_view body);

/// Largest body attached to an error verbatim.
inline constexpr size_t max_attached_body = 64 * 1024;

/// D1-D4: the decoder half.
struct decoder {
  /// Extracts tokens, logprobs and stop reason from a terminal response
  /// object. `raw_body` is attached (redacted) to every inference_error.
  /// `wire.layout` "top_level" reads D2-D4 from the response object itself
  /// instead of the output_text part.
  static caf::expected<tokens_with_logprobs>
  output(const boost::json::object& response, std::string_view raw_body,
         const wire_options& wire = default_wire());

  /// D5: the response's completed_at, if it is a finite positive number.
  static std::optional<double> completed_at(const boost::json::object& response);
};

} // namespace sail::wire_assumed
