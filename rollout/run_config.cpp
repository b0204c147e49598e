#include "sail_tinker/rollout/run_config.hpp"

#include <charconv>
#include <set>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "sail_tinker/rollout/keys.hpp"

namespace sail::rollout {

namespace json = boost::json;

std::string canonical_config(const completer_config& c, uint32_t group_size) {
  json::object o;
  auto opt = [](const std::optional<std::string>& x) -> json::value {
    return x ? json::value(*x) : json::value(nullptr);
  };
  o["adapter_config"] = opt(c.adapter_config);
  o["group_size"] = group_size;
  o["lora"] = opt(c.lora);
  o["max_tokens"] = c.max_tokens;
  json::object md;
  for (auto& [k, v] : c.metadata)
    md[k] = v;
  o["metadata"] = std::move(md);
  o["model"] = c.model;
  o["request_logprobs"] = c.request_logprobs;
  o["temperature"] = c.temperature;
  o["tinker_lora_name"] = opt(c.tinker_lora_name);
  o["tinker_lora_signed_url_sha256"] = c.tinker_lora_signed_url
                                         ? json::value(sha256_hex(*c.tinker_lora_signed_url))
                                         : json::value(nullptr);
  o["top_p"] = c.top_p;
  o["window"] = c.completion_window;
  return json::serialize(o);
}

std::string config_difference(const std::string& journal, const std::string& now,
                              std::string* first) {
  json::error_code ec1;
  json::error_code ec2;
  auto a = json::parse(journal, ec1);
  auto b = json::parse(now, ec2);
  if (ec1 || ec2 || !a.is_object() || !b.is_object())
    return "the journal's configuration is unreadable";
  std::set<std::string> names;
  for (auto& kv : a.get_object())
    names.emplace(kv.key());
  for (auto& kv : b.get_object())
    names.emplace(kv.key());
  std::string out;
  for (auto& n : names) {
    auto* x = a.get_object().if_contains(n);
    auto* y = b.get_object().if_contains(n);
    if (x != nullptr && y != nullptr && *x == *y)
      continue;
    if (first != nullptr && first->empty())
      *first = n;
    if (!out.empty())
      out += ", ";
    auto show = [&](const json::value* v) {
      if (v == nullptr)
        return std::string{"(none)"};
      if (n == "tinker_lora_signed_url_sha256")
        return std::string{v->is_null() ? "(none)" : "(a signed URL)"};
      if (v->is_double()) {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof(buf), v->get_double());
        return std::string{buf, r.ptr};
      }
      return json::serialize(*v);
    };
    out += n + " (journal " + show(x) + ", now " + show(y) + ")";
  }
  return out;
}

} // namespace sail::rollout
