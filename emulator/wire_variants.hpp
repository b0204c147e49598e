// Wire variants the emulator can play: each one departs from this project's
// guesses about Sail's unpublished wire details (docs/wire-contract.md,
// A1-A3 and D1-D4) the way one alternative of the [wire] switches
// (net/wire_options.hpp) expects, so that `sail-tinker doctor` and the
// switches are tested end to end against a real server.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sail::emulator {

enum class wire_variant : uint8_t {
  /// A2: a create whose `include` names message.output_text.logprobs is a
  /// 400 in Sail's error shape (param "include"); `logprobs: true` requests
  /// logprobs instead ([wire] logprobs = "field").
  reject_include,
  /// A1: stop token ids are read from `stop_token_ids`; ids in `stop` are
  /// ignored (strings in `stop` still apply) ([wire] stop-field =
  /// "stop_token_ids").
  stop_token_ids,
  /// D1-D4: token ids, logprobs and the stop reason are members of the
  /// response object; the output_text part carries the text only ([wire]
  /// layout = "top_level").
  top_level,
};

/// Every variant with its NAME (as `emulate --wire-variant NAME` spells it).
const std::vector<std::pair<std::string, wire_variant>>& wire_variant_names();

std::string to_string(wire_variant x);

/// The variant called `name`, if any.
std::optional<wire_variant> parse_wire_variant(std::string_view name);

/// Every NAME separated by `separator` ("reject-include|stop-token-ids|...").
std::string wire_variant_list(std::string_view separator = "|");

} // namespace sail::emulator
