#include "sail_tinker/emulator/wire_variants.hpp"

namespace sail::emulator {

const std::vector<std::pair<std::string, wire_variant>>& wire_variant_names() {
  static const std::vector<std::pair<std::string, wire_variant>> xs{
    {"reject-include", wire_variant::reject_include},
    {"stop-token-ids", wire_variant::stop_token_ids},
    {"top-level", wire_variant::top_level},
  };
  return xs;
}

std::string to_string(wire_variant x) {
  for (auto& [name, v] : wire_variant_names())
    if (v == x)
      return name;
  return "?";
}

std::optional<wire_variant> parse_wire_variant(std::string_view name) {
  for (auto& [n, v] : wire_variant_names())
    if (n == name)
      return v;
  return std::nullopt;
}

std::string wire_variant_list(std::string_view separator) {
  std::string out;
  for (auto& [name, v] : wire_variant_names()) {
    if (!out.empty())
      out += separator;
    out += name;
  }
  return out;
}

} // namespace sail::emulator
