// The step of the HTTP client that turns response bytes into an
// http_response: the Beast parser configuration (size limits, HEAD, proxy
// CONNECT replies) and the post-processing of a parsed message. Shared by
// http_client and the libFuzzer target fuzz/http_response_fuzz.cpp, so that
// the fuzzer runs exactly what the client runs on bytes from the network.
#pragma once

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "sail_tinker/net/http_client.hpp"

namespace sail {

/// The parser of a response to a normal request.
using http_response_parser
  = boost::beast::http::response_parser<boost::beast::http::string_body>;

/// The parser of a proxy's reply to CONNECT (header only).
using http_connect_parser
  = boost::beast::http::response_parser<boost::beast::http::empty_body>;

/// Applies the client's limits: header at most limits.max_header_bytes, body
/// at most limits.max_body_bytes; a response to HEAD has no body (skip).
void configure_response_parser(http_response_parser& parser,
                               const http_limits& limits, bool head_request);

/// A CONNECT reply: header only, at most limits.max_header_bytes.
void configure_connect_parser(http_connect_parser& parser,
                              const http_limits& limits);

/// Moves a completely parsed message into an http_response (status, every
/// header field in order, body). `keep_alive` tells whether the connection
/// may carry another exchange.
http_response take_http_response(http_response_parser& parser,
                                 bool& keep_alive);

} // namespace sail
