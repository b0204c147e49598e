#include "sail_tinker/net/webhook_delivery.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/sail_codec.hpp"

namespace sail {

namespace http = boost::beast::http;

namespace {

webhook_verdict refuse(http::status status, webhook_rejection why,
                       std::string_view message) {
  webhook_verdict v;
  v.status = status;
  v.rejection = why;
  // Control bytes dropped, quotes and backslashes escaped; bytes >= 0x80
  // become '?' so the answer stays valid JSON whatever the decoder quoted.
  v.answer = R"({"error":{"message":")";
  for (char c : message) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20)
      continue;
    if (c == '"' || c == '\\')
      v.answer += '\\';
    v.answer += u < 0x80 ? c : '?';
  }
  v.answer += R"(","type":")";
  v.answer += to_string(why);
  v.answer += R"("}})";
  return v;
}

} // namespace

const char* to_string(webhook_rejection r) noexcept {
  switch (r) {
    case webhook_rejection::unauthorized:
      return "unauthorized";
    case webhook_rejection::bad_route:
      return "bad_route";
    case webhook_rejection::too_large:
      return "too_large";
    case webhook_rejection::malformed:
      return "malformed";
  }
  return "unknown";
}

webhook_token_digest digest_webhook_token(std::string_view token) {
  webhook_token_digest out{};
  unsigned int n = 0;
  EVP_Digest(token.data(), token.size(), out.data(), &n, EVP_sha256(), nullptr);
  return out;
}

webhook_verdict judge_webhook_delivery(const http::request<http::string_body>& req,
                                       std::string_view path,
                                       const webhook_token_digest& token) {
  // Route.
  auto target = std::string_view{req.target().data(), req.target().size()};
  if (target.substr(0, target.find('?')) != path)
    return refuse(http::status::not_found, webhook_rejection::bad_route, "no such route");
  if (req.method() != http::verb::post)
    return refuse(http::status::method_not_allowed, webhook_rejection::bad_route,
                  "deliveries are POSTed");
  // Authenticate.
  auto value = req[http::field::authorization];
  std::string_view header{value.data(), value.size()};
  constexpr std::string_view scheme = "bearer ";
  std::string_view presented;
  if (header.size() > scheme.size()
      && boost::beast::iequals(header.substr(0, scheme.size()), scheme))
    presented = header.substr(scheme.size());
  auto got = digest_webhook_token(presented);
  if (presented.empty() || CRYPTO_memcmp(got.data(), token.data(), got.size()) != 0)
    return refuse(http::status::unauthorized, webhook_rejection::unauthorized,
                  "missing or wrong webhook token");
  // Parse: the same decoder as a poll's answer (a response object with an id
  // and a status); its typed error says what is wrong.
  auto malformed = [](const caf::error& err) {
    auto* info = info_of(err);
    return refuse(http::status::bad_request, webhook_rejection::malformed,
                  info != nullptr ? std::string_view{info->message}
                                  : std::string_view{"malformed delivery"});
  };
  // Parsed once, with its arena: it travels on to the worker.
  auto parsed = parse_body(req.body());
  if (!parsed)
    return malformed(parsed.error());
  auto state = decode_state((*parsed)->doc, req.body());
  if (!state)
    return malformed(state.error());
  webhook_verdict v;
  v.response_id = std::move(state->id);
  v.parsed = std::move(*parsed);
  v.answer = R"({"received":true})";
  return v;
}

} // namespace sail
