// Logging of the sail-tinker executable: human-readable lines (default) or
// JSON lines on stderr, with a level filter. Every message and field value is
// passed through sail::redact_secrets before it is written, so API keys,
// bearer tokens and signed URLs' query strings never reach a log.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sail::app {

enum class log_level : int { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

enum class log_format : int { text, json };

/// "debug" | "info" | "warn" | "error" | "off" (also "warning").
std::optional<log_level> parse_log_level(std::string_view text);

/// "text" | "json" (also "human").
std::optional<log_format> parse_log_format(std::string_view text);

const char* to_string(log_level level) noexcept;

/// Sets the process-wide level and format (thread-safe).
void configure_logging(log_level level, log_format format);

log_level current_log_level() noexcept;

using log_fields = std::vector<std::pair<std::string, std::string>>;

/// Writes one log line to stderr if `level` passes the filter.
void log(log_level level, std::string_view component, std::string_view message,
         const log_fields& fields = {});

inline void log_debug(std::string_view c, std::string_view m, const log_fields& f = {}) {
  log(log_level::debug, c, m, f);
}
inline void log_info(std::string_view c, std::string_view m, const log_fields& f = {}) {
  log(log_level::info, c, m, f);
}
inline void log_warn(std::string_view c, std::string_view m, const log_fields& f = {}) {
  log(log_level::warn, c, m, f);
}
inline void log_error(std::string_view c, std::string_view m, const log_fields& f = {}) {
  log(log_level::error, c, m, f);
}

} // namespace sail::app
