#include "sail_tinker/net/sail_usage.hpp"

#include <boost/json.hpp>

namespace sail {

namespace json = boost::json;

namespace {

/// Larger counts are refused: no sample bills 2^53 tokens, and every count
/// stays exact as a double (Python, JSON consumers).
constexpr int64_t max_count = int64_t{1} << 53;

/// Reads member `key` of `obj` as a count into `out`. Absent: `required`
/// decides (false leaves `out` at 0). Returns the problem, or empty.
std::string read_count(const json::object& obj, std::string_view key, bool required,
                       int64_t& out, std::string_view where) {
  auto* x = obj.if_contains(key);
  if (x == nullptr) {
    if (required)
      return std::string{where} + std::string{key} + " is missing";
    return {};
  }
  int64_t value = 0;
  if (auto* i = x->if_int64()) {
    value = *i;
  } else if (auto* u = x->if_uint64()) {
    if (*u > static_cast<uint64_t>(max_count))
      return std::string{where} + std::string{key} + " is too large";
    value = static_cast<int64_t>(*u);
  } else {
    return std::string{where} + std::string{key} + " is not an integer";
  }
  if (value < 0)
    return std::string{where} + std::string{key} + " is negative";
  if (value > max_count)
    return std::string{where} + std::string{key} + " is too large";
  out = value;
  return {};
}

/// Reads `details_key`.`key` (an optional object with an optional count).
std::string read_detail(const json::object& usage, std::string_view details_key,
                        std::string_view key, int64_t& out) {
  auto* d = usage.if_contains(details_key);
  if (d == nullptr || d->is_null())
    return {};
  auto* obj = d->if_object();
  if (obj == nullptr)
    return "usage." + std::string{details_key} + " is not an object";
  return read_count(*obj, key, false, out, "usage." + std::string{details_key} + ".");
}

} // namespace

usage_decoding decode_usage(const json::object& response) {
  usage_decoding result;
  auto* u = response.if_contains("usage");
  if (u == nullptr || u->is_null())
    return result;
  auto* obj = u->if_object();
  if (obj == nullptr) {
    result.problem = "usage is not an object";
    return result;
  }
  sample_usage x;
  auto& p = result.problem;
  p = read_count(*obj, "input_tokens", true, x.input_tokens, "usage.");
  if (p.empty())
    p = read_count(*obj, "output_tokens", true, x.output_tokens, "usage.");
  if (p.empty())
    p = read_detail(*obj, "input_tokens_details", "cached_tokens", x.cached_tokens);
  if (p.empty())
    p = read_detail(*obj, "output_tokens_details", "reasoning_tokens", x.reasoning_tokens);
  if (p.empty() && x.cached_tokens > x.input_tokens)
    p = "usage.input_tokens_details.cached_tokens exceeds input_tokens";
  if (p.empty())
    result.usage = x;
  return result;
}

usage_decoding decode_usage(std::string_view body) {
  json::error_code ec;
  auto doc = json::parse(body, ec);
  if (ec) {
    usage_decoding result;
    result.problem = "response is not valid JSON";
    return result;
  }
  auto* obj = doc.if_object();
  if (obj == nullptr) {
    usage_decoding result;
    result.problem = "response is not a JSON object";
    return result;
  }
  return decode_usage(*obj);
}

} // namespace sail
