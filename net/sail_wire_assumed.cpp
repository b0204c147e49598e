// The ASSUMED part of the Sail wire format; see the list in the header.
#include "sail_tinker/net/sail_wire_assumed.hpp"

#include <cmath>

#include <boost/json.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail::wire_assumed {

namespace json = boost::json;

// -- json_out -------------------------------------------------------------------

void json_out::string(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  buf_.push_back('"');
  auto* first = text.data();
  auto* last = first + text.size();
  auto* run = first;
  for (auto* i = first; i != last; ++i) {
    auto c = static_cast<unsigned char>(*i);
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    buf_.append(run, i);
    run = i + 1;
    buf_.push_back('\\');
    switch (c) {
      case '"':
        buf_.push_back('"');
        break;
      case '\\':
        buf_.push_back('\\');
        break;
      case '\n':
        buf_.push_back('n');
        break;
      case '\r':
        buf_.push_back('r');
        break;
      case '\t':
        buf_.push_back('t');
        break;
      case '\b':
        buf_.push_back('b');
        break;
      case '\f':
        buf_.push_back('f');
        break;
      default:
        buf_.append("u00");
        buf_.push_back(hex[c >> 4]);
        buf_.push_back(hex[c & 0xf]);
    }
  }
  buf_.append(run, last);
  buf_.push_back('"');
}

void json_out::number(double value) {
  char tmp[32];
  auto res = std::to_chars(tmp, tmp + sizeof(tmp), value);
  std::string_view text{tmp, static_cast<size_t>(res.ptr - tmp)};
  buf_.append(text);
  if (text.find_first_of(".eE") == std::string_view::npos)
    buf_.append(".0");
}

void json_out::integer_array(const std::vector<int64_t>& values) {
  // Digits go into a stack buffer flushed in large blocks: one memcpy per
  // few thousand tokens instead of one append per token.
  constexpr size_t block = 16 * 1024;
  constexpr size_t max_item = 21; // '-' + 19 digits + ','
  char tmp[block];
  size_t pos = 0;
  buf_.push_back('[');
  bool first = true;
  for (auto v : values) {
    if (pos + max_item > block) {
      buf_.append(tmp, pos);
      pos = 0;
    }
    if (!first)
      tmp[pos++] = ',';
    first = false;
    auto res = std::to_chars(tmp + pos, tmp + block, v);
    pos = static_cast<size_t>(res.ptr - tmp);
  }
  buf_.append(tmp, pos);
  buf_.push_back(']');
}

// -- errors ---------------------------------------------------------------------

caf::error response_error(std::string message, std::string_view body) {
  if (body.size() <= max_attached_body)
    return inference_error(std::move(message), std::string{body});
  std::string cut{body.substr(0, max_attached_body)};
  cut += "...[cut ";
  cut += std::to_string(body.size() - max_attached_body);
  cut += " bytes]";
  return inference_error(std::move(message), std::move(cut));
}

// -- encoder --------------------------------------------------------------------

void encoder::stop_and_include(json_out& out, const stop_condition& stop,
                               bool request_logprobs, const wire_options& wire) {
  // A1: the stop condition as the seed normalises it (a list of ids, a bare
  // string, or a list of strings).
  auto kind = wire.stop_field == "none" ? stop_condition::kind::none : stop.which();
  switch (kind) {
    case stop_condition::kind::none:
      break;
    case stop_condition::kind::text:
      out.key("stop");
      out.string(stop.strings.front());
      break;
    case stop_condition::kind::token_ids:
      out.key(wire.stop_field == "stop_token_ids" ? "stop_token_ids" : "stop");
      out.integer_array(stop.token_ids);
      break;
    case stop_condition::kind::strings: {
      out.key("stop");
      out.put('[');
      bool first = true;
      for (auto& s : stop.strings) {
        if (!first)
          out.put(',');
        first = false;
        out.string(s);
      }
      out.put(']');
      break;
    }
  }
  // A2: logprobs come back only when asked for.
  if (request_logprobs && wire.logprobs == "include") {
    out.key("include");
    out.put('[');
    out.string(wire.include_value);
    out.put(']');
  } else if (request_logprobs && wire.logprobs == "field") {
    out.key("logprobs");
    out.raw("true");
  }
}

caf::error encoder::lora_metadata(json_out& out, const completer_config& cfg,
                                  const wire_options& wire) {
  // A3: `lora` (seen live), then the Tinker keys.
  if (cfg.lora) {
    out.key(wire.lora_key);
    out.string(*cfg.lora);
  }
  if (cfg.tinker_lora_signed_url) {
    out.key(wire.signed_url_key);
    out.string(*cfg.tinker_lora_signed_url);
  }
  if (cfg.adapter_config) {
    // Either contract form (object, or string holding an object) becomes the
    // same canonical JSON text, sent as a string value.
    auto normalized = normalize_adapter_config(*cfg.adapter_config);
    if (!normalized)
      return std::move(normalized.error());
    out.key(wire.adapter_config_key);
    out.string(*normalized);
  }
  if (cfg.tinker_lora_name) {
    out.key(wire.lora_name_key);
    out.string(*cfg.tinker_lora_name);
  }
  return caf::none;
}

// -- decoder --------------------------------------------------------------------

namespace {

/// D1: the first content part with type "output_text" across output[].
const json::object* find_output_text(const json::object& response) {
  auto* output = response.if_contains("output");
  if (output == nullptr)
    return nullptr;
  auto scan_item = [](const json::value& item) -> const json::object* {
    auto* obj = item.if_object();
    if (obj == nullptr)
      return nullptr;
    auto* content = obj->if_contains("content");
    if (content == nullptr || !content->is_array())
      return nullptr;
    for (auto& part : content->get_array()) {
      auto* p = part.if_object();
      if (p == nullptr)
        continue;
      auto* type = p->if_contains("type");
      if (type != nullptr && type->is_string()
          && type->get_string() == "output_text")
        return p;
    }
    return nullptr;
  };
  if (auto* items = output->if_array()) {
    for (auto& item : *items)
      if (auto* part = scan_item(item))
        return part;
    return nullptr;
  }
  return scan_item(*output);
}

/// A JSON number as a double; nullopt for anything else.
std::optional<double> as_number(const json::value& x) {
  switch (x.kind()) {
    case json::kind::double_:
      return x.get_double();
    case json::kind::int64:
      return static_cast<double>(x.get_int64());
    case json::kind::uint64:
      return static_cast<double>(x.get_uint64());
    default:
      return std::nullopt;
  }
}

/// A non-empty string member, or an empty view.
std::string_view string_member(const json::object& obj, std::string_view key) {
  auto* x = obj.if_contains(key);
  if (x == nullptr || !x->is_string())
    return {};
  auto& str = x->get_string();
  return {str.data(), str.size()};
}

std::string at(size_t i) {
  return '[' + std::to_string(i) + ']';
}

} // namespace

caf::expected<tokens_with_logprobs>
decoder::output(const json::object& response, std::string_view raw_body,
                const wire_options& wire) {
  // D1: the output_text part, or (layout top_level) the response itself.
  auto* part = wire.layout == "top_level" ? &response : find_output_text(response);
  if (part == nullptr)
    return response_error("missing output_text", raw_body);
  tokens_with_logprobs result;
  // D2: token ids.
  auto* ids = part->if_contains("token_ids");
  if (ids == nullptr)
    return response_error(part == &response ? "response has no token_ids"
                                            : "output_text part has no token_ids",
                          raw_body);
  auto* id_array = ids->if_array();
  if (id_array == nullptr)
    return response_error("token_ids is not an array", raw_body);
  result.tokens.reserve(id_array->size());
  for (size_t i = 0; i < id_array->size(); ++i) {
    auto& x = (*id_array)[i];
    if (x.is_int64()) {
      auto v = x.get_int64();
      if (v < 0 || v > max_token_id)
        return response_error("token_ids" + at(i) + " = " + std::to_string(v)
                                + " is outside 0..2147483647",
                              raw_body);
      result.tokens.push_back(static_cast<int32_t>(v));
    } else if (x.is_uint64()) {
      return response_error("token_ids" + at(i) + " is outside 0..2147483647",
                            raw_body);
    } else {
      return response_error("token_ids" + at(i) + " is not an integer",
                            raw_body);
    }
  }
  // D3: logprobs.
  auto* lps = part->if_contains("logprobs");
  if (lps != nullptr && !lps->is_null()) {
    auto* lp_array = lps->if_array();
    if (lp_array == nullptr)
      return response_error("logprobs is not an array", raw_body);
    if (lp_array->size() != result.tokens.size())
      return response_error("logprobs has " + std::to_string(lp_array->size())
                              + " entries for "
                              + std::to_string(result.tokens.size())
                              + " tokens",
                            raw_body);
    std::vector<double> values;
    values.reserve(lp_array->size());
    for (size_t i = 0; i < lp_array->size(); ++i) {
      auto& x = (*lp_array)[i];
      auto value = as_number(x);
      if (!value) {
        if (auto* obj = x.if_object())
          if (auto* lp = obj->if_contains("logprob"))
            value = as_number(*lp);
      }
      if (!value)
        return response_error("logprobs" + at(i)
                                + " is neither a number nor an object with "
                                  "a numeric logprob",
                              raw_body);
      if (!std::isfinite(*value))
        return response_error("logprobs" + at(i) + " is not finite",
                              raw_body);
      values.push_back(*value);
    }
    result.maybe_logprobs = std::move(values);
  }
  // D4: stop reason fallbacks.
  auto reason = string_member(*part, "stop_reason");
  if (reason.empty())
    reason = string_member(response, "stop_reason");
  if (reason.empty()) {
    if (auto* details = response.if_contains("incomplete_details"))
      if (auto* obj = details->if_object())
        if (string_member(*obj, "reason") == "max_output_tokens")
          reason = "length";
  }
  if (reason.empty())
    reason = string_member(response, "status");
  if (reason.empty())
    reason = "unknown";
  result.stop_reason = std::string{reason};
  return result;
}

std::optional<double> decoder::completed_at(const json::object& response) {
  auto* x = response.if_contains("completed_at");
  if (x == nullptr || !x->is_number())
    return std::nullopt;
  json::error_code ec;
  auto v = x->to_number<double>(ec);
  if (ec || !std::isfinite(v) || v <= 0)
    return std::nullopt;
  return v;
}

} // namespace sail::wire_assumed
