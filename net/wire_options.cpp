#include "sail_tinker/net/wire_options.hpp"

#include <algorithm>

#include "sail_tinker/messages/error.hpp"

namespace sail {

namespace {

/// One [wire] key: its ini name, the field, and its default.
struct wire_key {
  const char* name;
  std::string wire_options::*field;
};

const wire_key wire_keys[] = {
  {"stop-field", &wire_options::stop_field},
  {"logprobs", &wire_options::logprobs},
  {"include-value", &wire_options::include_value},
  {"layout", &wire_options::layout},
  {"lora-key", &wire_options::lora_key},
  {"signed-url-key", &wire_options::signed_url_key},
  {"adapter-config-key", &wire_options::adapter_config_key},
  {"lora-name-key", &wire_options::lora_name_key},
};

caf::error one_of(const std::string& value, const std::vector<std::string>& choices,
                  const std::string& name) {
  if (std::find(choices.begin(), choices.end(), value) != choices.end())
    return caf::none;
  return invalid_argument(name, "expected " + join_choices(choices) + ", got \"" + value + "\"");
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

} // namespace

const std::vector<std::string>& wire_options::stop_field_choices() {
  static const std::vector<std::string> xs{"stop", "stop_token_ids", "none"};
  return xs;
}

const std::vector<std::string>& wire_options::logprobs_choices() {
  static const std::vector<std::string> xs{"include", "field", "none"};
  return xs;
}

const std::vector<std::string>& wire_options::layout_choices() {
  static const std::vector<std::string> xs{"output_text", "top_level"};
  return xs;
}

std::vector<std::string> wire_options::lora_keys() const {
  return {lora_key, signed_url_key, adapter_config_key, lora_name_key};
}

caf::error wire_options::validate(const std::string& prefix) const {
  if (auto err = one_of(stop_field, stop_field_choices(), prefix + "stop-field"))
    return err;
  if (auto err = one_of(logprobs, logprobs_choices(), prefix + "logprobs"))
    return err;
  if (auto err = one_of(layout, layout_choices(), prefix + "layout"))
    return err;
  if (include_value.empty() || !printable(include_value))
    return invalid_argument(prefix + "include-value", "expected a non-empty printable string");
  static const std::vector<std::string> taken{"completion_window", "completion_webhook",
                                              "webhook_token"};
  std::vector<std::string> seen;
  for (auto& k : wire_keys) {
    std::string_view name = k.name;
    if (!name.ends_with("-key"))
      continue;
    auto& value = this->*k.field;
    auto field = prefix + k.name;
    if (value.empty() || !printable(value))
      return invalid_argument(field, "expected a non-empty printable metadata key");
    if (std::find(taken.begin(), taken.end(), value) != taken.end())
      return invalid_argument(field, "\"" + value + "\" is a metadata key the completer sets itself");
    if (std::find(seen.begin(), seen.end(), value) != seen.end())
      return invalid_argument(field, "\"" + value + "\" is already the key of another LoRA field");
    seen.push_back(value);
  }
  return caf::none;
}

std::string wire_options::to_ini() const {
  static const wire_options defaults;
  std::string out = "[wire]\n";
  for (auto& k : wire_keys)
    if (this->*k.field != defaults.*k.field)
      out += std::string{k.name} + " = \"" + this->*k.field + "\"\n";
  return out;
}

std::vector<std::string> wire_options::to_args() const {
  static const wire_options defaults;
  std::vector<std::string> out;
  for (auto& k : wire_keys)
    if (this->*k.field != defaults.*k.field)
      out.push_back("--wire." + std::string{k.name} + "=" + this->*k.field);
  return out;
}

const wire_options& default_wire() {
  static const wire_options defaults;
  return defaults;
}

std::string join_choices(const std::vector<std::string>& choices, std::string_view separator) {
  std::string out;
  for (auto& c : choices) {
    if (!out.empty())
      out += separator;
    out += c;
  }
  return out;
}

} // namespace sail
