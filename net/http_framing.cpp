#include "sail_tinker/net/http_framing.hpp"

#include <boost/beast/core/string.hpp>

namespace sail {

namespace beast = boost::beast;

std::string http_response::header(std::string_view name) const {
  for (const auto& h : headers)
    if (beast::iequals(h.name, name))
      return h.value;
  return {};
}

void configure_response_parser(http_response_parser& parser,
                               const http_limits& limits, bool head_request) {
  parser.header_limit(limits.max_header_bytes);
  parser.body_limit(limits.max_body_bytes);
  if (head_request)
    parser.skip(true);
}

void configure_connect_parser(http_connect_parser& parser,
                              const http_limits& limits) {
  parser.skip(true);
  parser.header_limit(limits.max_header_bytes);
}

http_response take_http_response(http_response_parser& parser,
                                 bool& keep_alive) {
  auto& msg = parser.get();
  http_response resp;
  resp.status = msg.result_int();
  for (const auto& f : msg)
    resp.headers.push_back(http_header{std::string(f.name_string()),
                                       std::string(f.value())});
  resp.body = std::move(msg.body());
  keep_alive = msg.keep_alive();
  return resp;
}

} // namespace sail
