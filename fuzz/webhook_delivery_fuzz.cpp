// libFuzzer target for completion-webhook deliveries (net/webhook_delivery.*,
// run by net/webhook_receiver for every request): the bytes a caller sends
// go through a Beast request parser set up like http_session::do_read with
// the receiver's limits (webhook_options' body limit, header first, then the
// body, in chunks), up to four requests on one keep-alive connection; each
// request is then judged like a delivery (route, Bearer check, the poll
// decoder) for a receiver on /sail/webhook with a fixed token.
//
// Input: the first byte's low nibble is the number of bytes per read (0 =
// everything at once); the rest is what the caller sends.
//
// Invariants: no crash or sanitizer report; a verdict is 200 exactly when it
// has no rejection, and then it names a non-empty response id that
// decode_state finds in the body, the method is POST, the path is the
// receiver's and the request carried the token; a refusal's answer never
// holds the token (nor a token presented in the request) and is valid JSON.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>

#include "chunked_stream.hpp"
#include "fuzz_util.hpp"
#include "sail_tinker/net/http_server.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/webhook_delivery.hpp"

namespace {

using sail::fuzz::contains;
using sail::fuzz::require;
namespace http = boost::beast::http;

constexpr std::string_view path = "/sail/webhook";
constexpr std::string_view token = "whk_0123456789abcdef0123456789abcdef";
/// webhook_options::body_limit's default.
constexpr uint64_t body_limit = 16 * 1024 * 1024;

using sail::fuzz::chunked_stream;

void check(const http::request<http::string_body>& req,
           const sail::webhook_token_digest& digest) {
  auto v = sail::judge_webhook_delivery(req, path, digest);
  require((v.status == http::status::ok) == !v.rejection.has_value(),
          "200 exactly when nothing is refused");
  require(!contains(v.answer, token), "the token in an answer");
  auto auth = req[http::field::authorization];
  auto presented = std::string_view{auth.data(), auth.size()}.substr(std::min<size_t>(7, auth.size()));
  if (presented.size() >= 20 && presented.substr(0, 4) == "whk_")
    require(!contains(v.answer, presented), "a presented token in an answer");
  boost::system::error_code ec;
  boost::json::parse(v.answer, ec);
  require(!ec, "the answer is not valid JSON");
  if (v.rejection)
    return;
  require(req.method() == http::verb::post, "accepted a method other than POST");
  auto target = std::string_view{req.target().data(), req.target().size()};
  require(target.substr(0, target.find('?')) == path, "accepted another path");
  require(presented == token, "accepted without the token");
  require(!v.response_id.empty(), "accepted without a response id");
  auto state = sail::decode_state(req.body());
  require(state && state->id == v.response_id, "the id differs from the poll decoder's");
  // The parsed body the delivery carries (the worker decodes it, never the
  // text) says the same.
  require(v.parsed != nullptr, "accepted without the parsed body");
  auto carried = sail::decode_state(v.parsed->doc, req.body());
  require(carried && carried->id == v.response_id && carried->status == state->status,
          "the carried value differs from the body");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  static const auto digest = sail::digest_webhook_token(token);
  chunked_stream stream{sail::fuzz::as_text(data + 1, size - 1), data[0] & 0x0fu};
  const sail::http_server_options opts;
  boost::beast::flat_buffer buffer;
  for (int n = 0; n < 4; ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(opts.header_limit));
    parser.body_limit(body_limit);
    boost::system::error_code ec;
    http::read_header(stream, buffer, parser, ec);
    if (ec)
      break; // the session answers 413/431/400 (counted as rejected) or closes
    if (!parser.is_done()) {
      http::read(stream, buffer, parser, ec);
      if (ec)
        break;
    }
    auto req = parser.release();
    check(req, digest);
    if (!req.keep_alive())
      break;
  }
  return 0;
}
