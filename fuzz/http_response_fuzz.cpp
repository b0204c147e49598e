// libFuzzer target for the HTTP response framing of the client
// (net/http_client.cpp): the bytes a server (or a proxy) sends go through the
// same Beast parser configuration (net/http_framing.*: limits, HEAD, proxy
// CONNECT replies) and the same read loop (Beast's http::read is the
// synchronous twin of the http::async_read the client runs), fed in chunks
// like a socket delivers them, up to four responses on one keep-alive
// connection (bytes left over from one response start the next, as on a
// pooled connection). Then our own handling of each response: Retry-After
// through the retry policy of every request kind, a redirect's Location
// resolved and parsed as the next request URL, Expires, the Tinker archive
// unwrapping, and the Sail state or error decoding the worker runs.
//
// Input: the first byte picks the mode, the rest is what the peer sends.
//   low nibble: bytes per read (0 = everything at once)
//   bits 4-5:   3 ('0'..'?'): normal request, the client's limits
//               2 ('`'..'o'): normal request, small limits (256 B header,
//                             1 KiB body) to reach the limit paths
//               1 ('P'..'_'): HEAD request (no body)
//               0 ('@'..'O'): reply to a proxy CONNECT
//
// Invariants: no crash or sanitizer report; a body never exceeds the body
// limit, has its Content-Length when one is given (not chunked), is empty for
// HEAD, 1xx, 204 and 304; Retry-After never yields a negative delay or one
// above every configured cap; a resolved redirect URL carries no space,
// control character or line break (it becomes a request line); an Expires
// date round-trips through format_http_date.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>

#include "chunked_stream.hpp"
#include "fuzz_util.hpp"
#include "sail_tinker/net/http_date.hpp"
#include "sail_tinker/net/http_framing.hpp"
#include "sail_tinker/net/retry_policy.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/tinker_codec.hpp"
#include "sail_tinker/net/url.hpp"

namespace {

using namespace sail;
using sail::fuzz::require;
namespace http = boost::beast::http;
using sys_clock = std::chrono::system_clock;

using sail::fuzz::chunked_stream;

bool is_line_safe(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f;
  });
}

const sys_clock::time_point fixed_now{std::chrono::seconds(1'750'000'000)};

void check_retry_after(const http_response& resp) {
  auto ra = resp.header("Retry-After");
  if (auto d = parse_retry_after(ra, fixed_now))
    require(d->count() >= 0, "negative Retry-After");
  retry_options opts;
  opts.max_attempts = 6; // a cap, so that "none beyond it" is checked (0: no cap)
  retry_policy policy{opts, 42};
  auto cap = std::max({opts.max_delay, opts.max_retry_after, opts.still_building_delay});
  for (auto kind : {request_kind::sail_create, request_kind::sail_poll,
                    request_kind::tinker_ttl, request_kind::tinker_archive}) {
    auto d = policy.on_status(kind, 1, resp.status, ra, fixed_now);
    require(d.retry == policy.retryable_status(kind, resp.status),
            "retry decision disagrees with retryable_status");
    require(d.delay.count() >= 0 && d.delay <= cap, "retry delay out of bounds");
    if (!d.retry)
      require(d.delay.count() == 0, "a final decision with a delay");
    require(!d.cause.empty(), "retry decision without a cause");
    auto last = policy.on_status(kind, opts.max_attempts, resp.status, ra, fixed_now);
    require(!last.retry, "retry beyond max_attempts");
  }
}

void check_location(const http_response& resp) {
  auto loc = resp.header("Location");
  if (loc.empty())
    return;
  // What http_client::finish does with a redirect.
  const std::string base = "https://api.sail.example:8443/v1/responses/resp_1?x=1";
  auto next = resolve_url(base, loc);
  if (!next) {
    fuzz::require_kind(next.error(), errc::invalid_argument,
                       "bad Location: not invalid_argument");
    return;
  }
  require(is_line_safe(*next), "resolved redirect URL carries a space or control byte");
  auto parsed = parse_http_url(*next);
  if (!parsed) {
    fuzz::require_kind(parsed.error(), errc::invalid_argument,
                       "bad redirect URL: not invalid_argument");
    return;
  }
  require(!parsed->host.empty() && parsed->port != 0, "redirect URL without host/port");
  require(!parsed->target.empty() && parsed->target.front() == '/',
          "redirect target is not origin-form");
  require(is_line_safe(parsed->target) && is_line_safe(parsed->host_header()),
          "redirect request line or Host carries a space or control byte");
  (void) parsed->origin();
}

void check_expires(const http_response& resp) {
  auto tp = parse_http_date(resp.header("Expires"));
  if (!tp)
    return;
  auto again = parse_http_date(format_http_date(*tp));
  require(again.has_value()
            && *again == std::chrono::floor<std::chrono::seconds>(*tp),
          "HTTP date does not round-trip");
}

void check_decoders(const http_response& resp) {
  caf::timestamp now{std::chrono::seconds(1'750'000'000)};
  auto url = decode_archive_response(resp.status, resp.header("Location"),
                                     resp.header("Expires"), resp.body, now);
  if (!url)
    require(info_of(url.error()) != nullptr, "archive error without context");
  if (resp.status >= 200 && resp.status <= 299) {
    auto st = decode_state(resp.body);
    if (!st)
      fuzz::require_kind(st.error(), errc::inference_error,
                         "bad Sail state: not inference_error");
  } else {
    fuzz::require_kind(error_from_status(resp.status, resp.body), errc::http_error,
                       "Sail status error: not http_error");
  }
}

void check_response(const http_response& resp, const http_response_parser& parser,
                    const http_limits& limits, bool head) {
  require(resp.status <= 999, "status beyond three digits");
  require(resp.body.size() <= limits.max_body_bytes, "body above the limit");
  bool no_body = head || resp.status / 100 == 1 || resp.status == 204
                 || resp.status == 304;
  if (no_body)
    require(resp.body.empty(), "body on a response that has none");
  else if (!parser.chunked() && parser.get().has_content_length()) {
    auto cl = resp.header("Content-Length");
    uint64_t n = 0;
    bool digits = !cl.empty() && cl.size() < 19
                  && std::all_of(cl.begin(), cl.end(),
                                 [](char c) { return c >= '0' && c <= '9'; });
    for (char c : cl)
      n = digits ? n * 10 + static_cast<uint64_t>(c - '0') : 0;
    if (digits)
      require(resp.body.size() == n, "body length differs from Content-Length");
  }
  for (auto& h : resp.headers)
    require(!h.name.empty(), "header with an empty name");
  check_retry_after(resp);
  check_location(resp);
  check_expires(resp);
  check_decoders(resp);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  auto mode = data[0];
  chunked_stream stream{fuzz::as_text(data + 1, size - 1), mode & 0x0fu};
  auto kind = (mode >> 4) & 0x3u;
  http_limits limits;
  if (kind == 2) {
    limits.max_header_bytes = 256;
    limits.max_body_bytes = 1024;
  }
  boost::beast::flat_buffer buffer;
  boost::system::error_code ec;
  if (kind == 0) {
    // The proxy's reply to CONNECT: only the status matters (2xx or not).
    http_connect_parser parser;
    configure_connect_parser(parser, limits);
    http::read(stream, buffer, parser, ec);
    if (!ec)
      (void) (parser.get().result_int() / 100 == 2);
    return 0;
  }
  bool head = kind == 1;
  // Up to four exchanges on one keep-alive connection.
  for (int exchange = 0; exchange < 4; ++exchange) {
    http_response_parser parser;
    configure_response_parser(parser, limits, head);
    http::read(stream, buffer, parser, ec);
    if (ec)
      break; // the client turns it into a typed transport_error / timeout
    require(parser.is_done(), "read returned without a complete message");
    bool keep_alive = false;
    auto resp = take_http_response(parser, keep_alive);
    check_response(resp, parser, limits, head);
    if (!keep_alive)
      break;
  }
  return 0;
}
