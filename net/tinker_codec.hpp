// The Tinker REST codec (Tinker's Python SDK v0.25.0; docs/wire-contract.md): tinker path parsing, URL
// building, API key check, TTL body, archive URL unwrapping and error bodies.
// Pure functions, no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timestamp.hpp>

#include "sail_tinker/messages/types.hpp"

namespace sail {

/// The production base URL, used when TINKER_BASE_URL is unset or empty.
inline constexpr std::string_view tinker_default_base_url
  = "https://tinker.thinkingmachines.dev/services/tinker-prod";

/// Lifetime assumed for a signed URL whose response names no (parseable)
/// expiry.
inline constexpr std::chrono::minutes tinker_default_url_lifetime{15};

/// The checkpoint kinds a tinker path may name.
inline constexpr std::string_view tinker_checkpoint_kinds[]
  = {"weights", "sampler_weights", "external_weights"};

/// Parses "tinker://<run>/<kind>/<name>": exactly three non-empty parts, kind
/// one of tinker_checkpoint_kinds. Also refused (they would change the meaning
/// of the request URL): "." or ".." as a part, control characters or spaces
/// anywhere, and '?', '#', '%', '\\' in the name (the name goes into URLs
/// unencoded). Error: invalid_argument, field "tinker_path".
caf::expected<tinker_path> parse_tinker_path(std::string_view uri);

/// The base URL from the TINKER_BASE_URL value: empty (after trimming
/// whitespace) -> tinker_default_base_url; trailing slashes stripped.
std::string tinker_base_url(std::string_view env_value);

/// Like tinker_base_url, but also checks that the result is an absolute
/// http(s) URL with a host and no query or fragment. Error: invalid_argument,
/// field "TINKER_BASE_URL".
caf::expected<std::string> checked_tinker_base_url(std::string_view env_value);

/// Percent-encodes every byte that is not allowed raw in a URL path segment
/// (RFC 3986 pchar minus '%': unreserved, sub-delims, ':' and '@' stay).
std::string percent_encode_path_segment(std::string_view segment);

/// "/api/v1/training_runs/{run}/checkpoints/{kind}/{name}/ttl". The run id is
/// percent-encoded as a path segment; the checkpoint id keeps its slash.
std::string ttl_target(const tinker_path& path);

/// "/api/v1/training_runs/{run}/checkpoints/{kind}/{name}/archive".
std::string archive_target(const tinker_path& path);

/// Joins a base URL (as from tinker_base_url; trailing slashes tolerated) and
/// a target starting with '/' (a missing leading slash is added).
std::string tinker_url(std::string_view base_url, std::string_view target);

/// Checks a Tinker API key before any request: empty -> not_configured;
/// anything not starting with "tml-" or "eyJ" (a JWT), nothing after the
/// prefix, or whitespace/control characters -> invalid_argument, field
/// "TINKER_API_KEY". The key never appears in the error.
caf::error check_tinker_api_key(std::string_view key);

/// Request headers of a Tinker call: X-API-Key, Accept: application/json and,
/// when `json_body` is true, Content-Type: application/json.
std::vector<http_header> tinker_headers(std::string_view api_key,
                                        bool json_body);

/// The TTL request body: {"ttl_seconds":N} or {"ttl_seconds":null} (removes
/// the expiry). ttl <= 0 -> invalid_argument, field "ttl_seconds".
caf::expected<std::string> encode_ttl_body(std::optional<int64_t> ttl_seconds);

/// Unwraps the archive response.
/// - 301/302/303/307/308 with a Location -> that URL; expiry from the Expires
///   HTTP-date, absent or unparseable -> now + 15 min. Without Location ->
///   inference_error.
/// - 2xx with a JSON body: a bare string, or an object with one of the keys
///   url / signed_url / archive_url / checkpoint_archive_url (first found in
///   that order); expiry from "expires" (ISO-8601, or an HTTP-date), else
///   now + 15 min. No URL, an empty URL, or invalid JSON -> inference_error
///   with the body attached.
/// - The URL must be an absolute http(s) URL, else inference_error.
/// - Any other status -> tinker_error_from_status(status, body).
/// The signed URL's query string never appears in an error message.
caf::expected<signed_url> decode_archive_response(unsigned status,
                                                  std::string_view location_header,
                                                  std::string_view expires_header,
                                                  std::string_view body,
                                                  caf::timestamp now);

/// The "detail" of a FastAPI error body {"detail": ...}: the string itself,
/// or the serialized JSON when it is an object, array, number or bool. Empty
/// when the body is not JSON, not an object, has no detail, or it is null.
std::string decode_tinker_error_detail(std::string_view body);

/// http_error with the status, the body attached and the detail (at most 512
/// bytes of it) in the message: "Tinker HTTP 404: <detail>".
caf::error tinker_error_from_status(unsigned status, std::string_view body);

} // namespace sail
