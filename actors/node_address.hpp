// host:port of a service node, and the parsers of the --nodes list.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace sail {

/// host:port of a service node.
struct node_address {
  std::string host;
  uint16_t port = 0;

  /// "host:port" ("[v6]:port" for IPv6 literals).
  std::string to_string() const;

  friend bool operator==(const node_address&, const node_address&) = default;
};

/// Parses "host:port" or "[v6]:port"; invalid_argument naming `field`.
caf::expected<node_address> parse_node_address(std::string_view text,
                                                std::string field = "nodes");

/// Parses "host:port,host:port,..." (no duplicates, at least one).
caf::expected<std::vector<node_address>> parse_node_list(std::string_view text,
                                                         std::string field = "nodes");

} // namespace sail
