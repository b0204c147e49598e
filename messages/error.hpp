// The one error enum of sail-tinker, registered with CAF so that errors travel
// between actors and nodes as typed values with their context attached.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>

#include "sail_tinker/messages/fwd.hpp"

namespace sail {

/// Error kinds. 0 means "no error" in CAF, so codes start at 1.
enum class errc : uint8_t {
  /// Bad configuration or input (Python's ValueError / TypeError).
  invalid_argument = 1,
  /// Malformed Sail/Tinker response or a failed inference task.
  inference_error,
  /// Non-2xx HTTP status after retries (status and body attached).
  http_error,
  /// A deadline expired.
  timeout,
  /// Admission refused: too much work in flight. The caller may retry.
  overloaded,
  /// Connection, TLS or protocol failure below HTTP.
  transport_error,
  /// The caller cancelled the work.
  cancelled,
  /// A required setting (API key, endpoint) is missing.
  not_configured,
  /// The service node that held the work is gone.
  node_down,
  /// A local file (rollout's journal or samples file) could not be read or
  /// written: permissions, disk full, a file locked by another process.
  io_error,
  /// Sail is failing (the pool's circuit breaker is open): new work is
  /// refused at once; the message says when the breaker probes next. Unlike
  /// `overloaded` (this node is full), another node would see the same Sail.
  unavailable,
  /// A spending cap (budget in USD or tokens) does not admit the sample: it
  /// was not sent. Samples already sent complete and are billed.
  budget_exceeded,
};

/// Number of enumerators (codes are 1..errc_count).
inline constexpr uint8_t errc_count = 12;

/// The enumerator's name, e.g. "invalid_argument"; "unknown" for other values.
const char* to_string(errc code) noexcept;

/// Parses a name produced by to_string.
std::optional<errc> parse_errc(std::string_view name) noexcept;

/// Context carried by every sail error. `body` is redacted before it is stored.
struct error_info {
  std::string message;       ///< human-readable description
  std::string field;         ///< offending configuration/input field, if any
  uint16_t http_status = 0;  ///< HTTP status, 0 if none
  std::string body;          ///< offending response body (secrets redacted)

  friend bool operator==(const error_info&, const error_info&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, error_info& x) {
  return f(caf::meta::type_name("sail.error_info"), x.message, x.field,
           x.http_status, x.body);
}

/// Builds a sail error. The body is passed through redact_secrets().
caf::error make_error(errc code, std::string message, std::string field = {},
                      uint16_t http_status = 0, std::string body = {});

/// invalid_argument naming the offending field.
caf::error invalid_argument(std::string field, std::string message);

/// inference_error with the offending response body attached.
caf::error inference_error(std::string message, std::string body = {});

/// http_error with status and body attached.
caf::error http_error(uint16_t status, std::string body,
                      std::string message = {});

/// The error's kind if it belongs to the sail category.
std::optional<errc> code_of(const caf::error& err) noexcept;

/// The context of a sail error, or nullptr.
const error_info* info_of(const caf::error& err) noexcept;

/// "kind: message [field=...] [status=...] [body=...]" for sail errors;
/// CAF's own rendering (category, code, context) for any other error.
std::string render(const caf::error& err);

/// Renderer registered with CAF (three-argument add_error_category).
std::string render_error(uint8_t code, caf::atom_value category,
                         const caf::message& context);

/// CAF category atom of sail errors.
inline constexpr caf::atom_value error_category = caf::atom("sail");

} // namespace sail

CAF_ERROR_CODE_ENUM(sail::errc, "sail")
