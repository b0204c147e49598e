#include "sail_tinker/net/sail_codec.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include <boost/json.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/sail_usage.hpp"
#include "sail_tinker/net/sail_wire_assumed.hpp"

namespace sail {

namespace json = boost::json;
using wire_assumed::json_out;
using wire_assumed::response_error;

namespace {

bool is_printable_ascii(std::string_view text) noexcept {
  return std::all_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f;
  });
}

std::string_view view(const json::string& str) noexcept {
  return {str.data(), str.size()};
}

std::string capped(std::string text, size_t limit = 1024) {
  if (text.size() > limit) {
    text.resize(limit);
    text += "...";
  }
  return text;
}

} // namespace

// -- create ---------------------------------------------------------------------

std::string poll_target(std::string_view response_id) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out{create_target};
  out.reserve(out.size() + 1 + response_id.size() * 3);
  out += '/';
  for (char c : response_id) {
    auto u = static_cast<unsigned char>(c);
    bool unreserved = (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z')
                      || (u >= '0' && u <= '9') || u == '-' || u == '.'
                      || u == '_' || u == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0xf];
    }
  }
  return out;
}

caf::expected<create_request>
encode_create(const completer_config& cfg, const sample_request& req,
              std::string_view idempotency_key, bool background,
              const webhook_endpoint* webhook, const wire_options& wire) {
  // -- wire invariants: what would make a malformed request ------------------------
  // The input rules (prompt, stop, caps, model, metadata keys, ...) are
  // validate()'s, which every path runs before it encodes (the completer,
  // the durable completer, the doctor); these are what the encoder itself
  // relies on to write a well-formed body and headers.
  if (idempotency_key.empty() || idempotency_key.size() > 255
      || !is_printable_ascii(idempotency_key))
    return invalid_argument("idempotency_key",
                            "Idempotency-Key must be 1..255 printable ASCII "
                            "characters");
  // JSON has no NaN or infinity.
  if (!std::isfinite(cfg.temperature))
    return invalid_argument("temperature", "temperature must be finite");
  if (!std::isfinite(cfg.top_p))
    return invalid_argument("top_p", "top_p must be finite");
  // A LoRA source that is neither a Sail adapter name nor a signed URL (e.g.
  // a Tinker checkpoint not yet resolved) must not silently sample the base
  // model.
  if (cfg.uses_lora() && !cfg.lora && !cfg.tinker_lora_signed_url)
    return invalid_argument("tinker_lora_signed_url",
                            "the LoRA source is not resolved to a signed URL");
  // No metadata key twice: validate() keeps user keys off the completer's
  // own (reserved_metadata_keys); [wire] may rename the LoRA keys.
  if (!cfg.metadata.empty())
    for (auto* key : {&wire.lora_key, &wire.signed_url_key, &wire.adapter_config_key,
                      &wire.lora_name_key})
      if (cfg.metadata.count(*key) > 0)
        return invalid_argument("metadata." + *key,
                                "metadata key '" + *key
                                  + "' is set by the completer itself ([wire])");
  // Header values: no byte that could end or inject a header.
  if (cfg.voyage) {
    auto& v = *cfg.voyage;
    if (!is_printable_ascii(v.id))
      return invalid_argument("voyage.id",
                              "voyage id must be a non-empty printable string");
    if (v.span_id && !is_printable_ascii(*v.span_id))
      return invalid_argument("voyage.span_id", "must be printable ASCII");
    if (v.agent_id && !is_printable_ascii(*v.agent_id))
      return invalid_argument("voyage.agent_id", "must be printable ASCII");
  }
  auto max_tokens = effective_max_tokens(cfg, req);
  // -- body, in the documented order ---------------------------------------------
  create_request result;
  auto& body = result.body;
  size_t guess = 512 + cfg.model.size() + req.prompt_cache_key.size()
                 + req.prompt.tokens.size() * 11;
  for (auto& [key, value] : cfg.metadata)
    guess += key.size() + value.size() + 8;
  body.reserve(guess);
  json_out out{body};
  out.put('{');
  out.key("model", true);
  out.string(cfg.model);
  out.key("input");
  out.raw(R"(".")");
  out.key("raw_prompt_tokens");
  out.integer_array(req.prompt.tokens);
  out.key("max_output_tokens");
  out.integer(max_tokens);
  out.key("temperature");
  out.number(cfg.temperature);
  out.key("top_p");
  out.number(cfg.top_p);
  out.key("background");
  out.raw(background ? "true" : "false");
  wire_assumed::encoder::stop_and_include(out, req.stop, cfg.request_logprobs, wire);
  if (!req.prompt_cache_key.empty()) {
    out.key("prompt_cache_key");
    out.string(req.prompt_cache_key);
  }
  out.key("metadata");
  out.put('{');
  out.key("completion_window", true);
  out.string(cfg.completion_window);
  if (auto err = wire_assumed::encoder::lora_metadata(out, cfg, wire))
    return err;
  if (webhook != nullptr && !webhook->empty()) {
    out.key("completion_webhook");
    out.string(webhook->url);
    if (!webhook->token.empty()) {
      out.key("webhook_token");
      out.string(webhook->token);
    }
  }
  for (auto& [key, value] : cfg.metadata) { // std::map: key order
    out.key(key);
    out.string(value);
  }
  out.put('}');
  out.put('}');
  // The body lives as long as its sample (for every create attempt): keep no
  // slack of the guess above.
  body.shrink_to_fit();
  result.headers = create_headers(cfg, idempotency_key);
  return result;
}

std::vector<http_header> create_headers(const completer_config& cfg,
                                        std::string_view idempotency_key) {
  std::vector<http_header> hdrs;
  hdrs.reserve(2
               + (cfg.voyage ? 1 + (cfg.voyage->span_id ? 1 : 0)
                                 + (cfg.voyage->agent_id ? 1 : 0)
                             : 0));
  hdrs.push_back({"Content-Type", "application/json"});
  hdrs.push_back({"Idempotency-Key", std::string{idempotency_key}});
  if (cfg.voyage) {
    hdrs.push_back({"X-Sail-Voyage-Id", cfg.voyage->id});
    if (cfg.voyage->span_id)
      hdrs.push_back({"X-Sail-Voyage-Span-Id", *cfg.voyage->span_id});
    if (cfg.voyage->agent_id)
      hdrs.push_back({"X-Sail-Voyage-Agent-Id", *cfg.voyage->agent_id});
  }
  return hdrs;
}

http_header bearer_auth(std::string_view api_key) {
  http_header result{"Authorization", "Bearer "};
  for (char c : api_key) {
    auto u = static_cast<unsigned char>(c);
    if (u > 0x20 && u < 0x7f) // also drops spaces: a token has none
      result.value += c;
  }
  return result;
}

// -- responses --------------------------------------------------------------------

response_phase classify_status(std::string_view status) noexcept {
  if (status == "queued" || status == "pending" || status == "in_progress"
      || status == "running")
    return response_phase::pending;
  if (status == "completed" || status == "incomplete" || status == "failed"
      || status == "cancelled")
    return response_phase::terminal;
  return response_phase::unknown;
}

caf::expected<json::value> parse_response(std::string_view body, json::storage_ptr mr) {
  json::parse_options opts; // strict RFC 8259, depth limit 32
  json::error_code ec;
  auto doc = json::parse(body, ec, std::move(mr), opts);
  if (ec)
    return response_error("response is not valid JSON: " + ec.message(), body);
  return doc;
}

caf::expected<std::shared_ptr<const parsed_body>> parse_body(std::string_view body) {
  auto result = std::make_shared<parsed_body>();
  auto doc = parse_response(body, result->doc.storage());
  if (!doc)
    return std::move(doc.error());
  result->doc = std::move(*doc); // the same arena: moved, not copied
  return result;
}

caf::expected<response_state> decode_state(const json::value& doc,
                                           std::string_view raw_body) {
  auto* obj = doc.if_object();
  if (obj == nullptr)
    return response_error("response is not a JSON object", raw_body);
  auto* id = obj->if_contains("id");
  if (id == nullptr || !id->is_string() || id->get_string().empty())
    return response_error("response has no id", raw_body);
  // The id becomes a path segment of the poll URL: "." and ".." would be
  // dot segments there (GET /v1/responses/.. is /v1/ after normalisation).
  if (id->get_string() == "." || id->get_string() == "..")
    return response_error("response id is a dot segment", raw_body);
  auto* status = obj->if_contains("status");
  if (status == nullptr || !status->is_string()
      || status->get_string().empty())
    return response_error("response has no status", raw_body);
  response_state result;
  result.id = view(id->get_string());
  result.status = view(status->get_string());
  result.phase = classify_status(result.status);
  result.completed_at = wire_assumed::decoder::completed_at(*obj);
  return result;
}

caf::expected<response_state> decode_state(std::string_view body) {
  response_arena arena;
  auto doc = parse_response(body, &arena.mr);
  if (!doc)
    return std::move(doc.error());
  return decode_state(*doc, body);
}

caf::expected<tokens_with_logprobs> decode_result(const json::value& doc,
                                                  std::string_view raw_body,
                                                  const wire_options& wire) {
  auto* obj = doc.if_object();
  if (obj == nullptr)
    return response_error("response is not a JSON object", raw_body);
  std::string_view status;
  if (auto* st = obj->if_contains("status"); st != nullptr && st->is_string())
    status = view(st->get_string());
  if (status == "failed" || status == "cancelled") {
    std::string msg = "Sail response ";
    if (auto* id = obj->if_contains("id"); id != nullptr && id->is_string()) {
      msg += capped(std::string{view(id->get_string())}, 128);
      msg += ' ';
    }
    msg += status;
    if (auto* err = obj->if_contains("error"); err != nullptr && !err->is_null())
      msg += ": error " + capped(json::serialize(*err));
    return response_error(std::move(msg), raw_body);
  }
  if (classify_status(status) == response_phase::pending)
    return response_error("response is not finished (status "
                            + std::string{status} + ")",
                          raw_body);
  auto result = wire_assumed::decoder::output(*obj, raw_body, wire);
  if (result)
    result->usage = decode_usage(*obj).usage;
  return result;
}

caf::expected<tokens_with_logprobs> decode_result(std::string_view body,
                                                  const wire_options& wire) {
  response_arena arena;
  auto doc = parse_response(body, &arena.mr);
  if (!doc)
    return std::move(doc.error());
  return decode_result(*doc, body, wire);
}

// -- errors -----------------------------------------------------------------------

namespace {

/// A scalar member as text: strings verbatim, numbers and booleans in JSON
/// form, null/absent/containers empty.
std::string scalar_text(const json::object& obj, std::string_view key) {
  auto* x = obj.if_contains(key);
  if (x == nullptr)
    return {};
  switch (x->kind()) {
    case json::kind::string:
      return std::string{view(x->get_string())};
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
    case json::kind::bool_:
      return json::serialize(*x);
    default:
      return {};
  }
}

} // namespace

std::optional<sail_error_body> decode_error_body(std::string_view body) {
  response_arena arena;
  auto doc = parse_response(body, &arena.mr);
  if (!doc)
    return std::nullopt;
  auto* root = doc->if_object();
  if (root == nullptr)
    return std::nullopt;
  auto* err = root->if_contains("error");
  if (err == nullptr)
    return std::nullopt;
  sail_error_body result;
  if (auto* str = err->if_string()) {
    result.message = view(*str);
    return result;
  }
  auto* obj = err->if_object();
  if (obj == nullptr)
    return std::nullopt;
  result.message = scalar_text(*obj, "message");
  result.type = scalar_text(*obj, "type");
  result.param = scalar_text(*obj, "param");
  result.code = scalar_text(*obj, "code");
  return result;
}

caf::error error_from_status(unsigned status, std::string_view body) {
  auto code = static_cast<uint16_t>(std::min(status, 65535u));
  std::string msg = "HTTP " + std::to_string(status);
  if (auto eb = decode_error_body(body)) {
    if (!eb->message.empty())
      msg += ": " + capped(eb->message);
    std::string details;
    auto add = [&details](const char* name, const std::string& value) {
      if (value.empty())
        return;
      details += details.empty() ? " (" : ", ";
      details += name;
      details += '=';
      details += capped(value, 128);
    };
    add("type", eb->type);
    add("code", eb->code);
    add("param", eb->param);
    if (!details.empty())
      msg += details + ')';
  }
  std::string attached{body.substr(0, wire_assumed::max_attached_body)};
  if (body.size() > wire_assumed::max_attached_body)
    attached += "...[cut " + std::to_string(body.size()
                                            - wire_assumed::max_attached_body)
                + " bytes]";
  return http_error(code, std::move(attached), std::move(msg));
}

} // namespace sail
