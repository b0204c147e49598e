// Keeps secrets (API keys, bearer tokens, signed URLs' query strings) out of
// logs, errors and test output.
#pragma once

#include <string>
#include <string_view>

namespace sail {

/// Returns `text` with every secret-looking token replaced by "[REDACTED]":
/// Sail keys (sk_...), Tinker keys (tml-...), JWTs (eyJ...), webhook tokens
/// (whk_...), the token after
/// "Bearer ", and the query string of every http(s) URL (signed URLs carry
/// their signature there).
std::string redact_secrets(std::string_view text);

/// A URL with its query string and fragment replaced by "?[REDACTED]"; userinfo
/// (user:password@) is dropped as well.
std::string redact_url(std::string_view url);

} // namespace sail
