#include "sail_tinker/actors/node_address.hpp"

#include <algorithm>
#include <charconv>

#include "sail_tinker/messages/error.hpp"

namespace sail {

std::string node_address::to_string() const {
  if (host.find(':') != std::string::npos)
    return '[' + host + "]:" + std::to_string(port);
  return host + ':' + std::to_string(port);
}

caf::expected<node_address> parse_node_address(std::string_view text,
                                                std::string field) {
  auto bad = [&](const std::string& why) {
    return invalid_argument(field, "'" + std::string{text} + "' is not host:port: " + why);
  };
  node_address result;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("expected [address]:port");
    result.host = std::string{text.substr(1, close - 1)};
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return bad("missing port");
    result.host = std::string{text.substr(0, colon)};
    if (result.host.find(':') != std::string::npos)
      return bad("write IPv6 addresses as [address]:port");
    port_text = text.substr(colon + 1);
  }
  if (result.host.empty())
    return bad("empty host");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || value == 0
      || value > 65535)
    return bad("port must be 1..65535");
  result.port = static_cast<uint16_t>(value);
  return result;
}

caf::expected<std::vector<node_address>> parse_node_list(std::string_view text,
                                                         std::string field) {
  std::vector<node_address> result;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (!item.empty()) {
      auto addr = parse_node_address(item, field);
      if (!addr)
        return std::move(addr.error());
      if (std::find(result.begin(), result.end(), *addr) != result.end())
        return invalid_argument(field, "node " + addr->to_string() + " is listed twice");
      result.push_back(std::move(*addr));
    }
    if (comma == std::string_view::npos)
      break;
    text.remove_prefix(comma + 1);
  }
  if (result.empty())
    return invalid_argument(field, "no service node given");
  return result;
}

} // namespace sail
