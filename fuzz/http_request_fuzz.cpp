// libFuzzer target for the request side of net/http_server (the /metrics
// listener of `serve`, which may bind off loopback, and later webhook
// receivers): the bytes a client sends go through a Beast request parser set
// up like http_session::do_read (header_limit and body_limit from
// http_server_options' defaults), read header first and then the body as
// the session does, in chunks like a socket delivers them, up to four
// requests on one keep-alive connection; then the /metrics handler's routing
// (method, path without the query).
//
// Input: the first byte's low nibble is the number of bytes per read (0 =
// everything at once); the rest is what the client sends.
//
// Invariants: no crash or sanitizer report; a body never exceeds the limit
// and matches its Content-Length when not chunked.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include "chunked_stream.hpp"
#include "fuzz_util.hpp"
#include "sail_tinker/net/http_server.hpp"

namespace {

using sail::fuzz::require;
namespace http = boost::beast::http;

using sail::fuzz::chunked_stream;

/// The routing of app/metrics.cpp's handler.
int route(const http::request<http::string_body>& req) {
  std::string target{req.target()};
  auto path = target.substr(0, target.find('?'));
  if (req.method() != http::verb::get && req.method() != http::verb::head)
    return 405;
  if (path == "/healthz")
    return 200;
  if (path != "/metrics")
    return 404;
  return 200;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  chunked_stream stream{sail::fuzz::as_text(data + 1, size - 1), data[0] & 0x0fu};
  const sail::http_server_options opts;
  boost::beast::flat_buffer buffer;
  for (int n = 0; n < 4; ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(opts.header_limit));
    parser.body_limit(opts.body_limit);
    boost::system::error_code ec;
    http::read_header(stream, buffer, parser, ec);
    if (ec)
      break; // the session answers 413/431/400 or closes
    if (!parser.is_done()) {
      http::read(stream, buffer, parser, ec);
      if (ec)
        break;
    }
    auto req = parser.release();
    require(req.body().size() <= opts.body_limit, "request body above the limit");
    if (!req.chunked() && req.has_content_length()) {
      auto cl = req[http::field::content_length];
      bool digits = !cl.empty() && cl.size() < 19
                    && std::all_of(cl.begin(), cl.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
      if (digits)
        require(req.body().size() == std::stoull(std::string{cl}),
                "request body length differs from Content-Length");
    }
    (void) route(req);
    if (!req.keep_alive())
      break;
  }
  return 0;
}
