// The judgement of one completion-webhook delivery, apart from any socket:
// route -> authenticate -> parse, and the answer Sail gets. The receiver
// (webhook_receiver.hpp) runs it for every request; the fuzz target
// fuzz/webhook_delivery_fuzz.cpp feeds it arbitrary requests.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

namespace sail {

struct parsed_body;

/// Why a delivery was refused.
enum class webhook_rejection : uint8_t {
  unauthorized,  ///< 401: missing or wrong Bearer token
  bad_route,     ///< 404 / 405: another path or method
  too_large,     ///< 413: body over body_limit (or a header over its limit)
  malformed,     ///< 400: not a response object with an id
};

/// "unauthorized", "bad_route", "too_large", "malformed".
const char* to_string(webhook_rejection r) noexcept;

/// SHA-256 of a token: deliveries are compared digest against digest, so the
/// comparison's time depends neither on where a wrong token differs nor on
/// its length.
using webhook_token_digest = std::array<unsigned char, 32>;

webhook_token_digest digest_webhook_token(std::string_view token);

/// What to do with one request.
struct webhook_verdict {
  /// 200 (accepted), 400, 401, 404 or 405.
  boost::beast::http::status status = boost::beast::http::status::ok;
  /// Set exactly when status is not 200.
  std::optional<webhook_rejection> rejection;
  /// Accepted: the response id the body names.
  std::string response_id;
  /// Accepted: the body, parsed (the only parse a delivery gets: the worker
  /// decodes this value).
  std::shared_ptr<const parsed_body> parsed;
  /// The answer's JSON body: {"received":true}, or an error object whose
  /// message is fixed text or the decoder's message (never the token, never
  /// the body).
  std::string answer;
};

/// Judges `req` for a receiver on `path` whose token has digest `token`:
///   - not POST <path> (query ignored)   404 / 405, bad_route
///   - wrong or missing Bearer token     401, unauthorized
///   - body without a response id        400, malformed (decode_state's
///                                       typed error names what is missing)
///   - otherwise                         200 with the response id
webhook_verdict judge_webhook_delivery(
  const boost::beast::http::request<boost::beast::http::string_body>& req,
  std::string_view path, const webhook_token_digest& token);

} // namespace sail
