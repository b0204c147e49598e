#include "sail_tinker/messages/validation.hpp"

#include <algorithm>
#include <cmath>

#include <boost/json.hpp>

#include "sail_tinker/net/url.hpp"

namespace sail {

namespace json = boost::json;

// -- model table ----------------------------------------------------------------

const model_table& model_table::builtin() {
  // Only what Sail documents (docs/wire-contract.md, "Built-in model
  // table"). Every other model is unknown: any window, any
  // LoRA source, and the server judges (its 4xx comes back as a typed
  // http_error with the body attached). Window support per model is
  // published on Sail's /pricing page and changes, so no window list is
  // built in; deployments load a fuller table from configuration
  // ([sail] model-table).
  static const model_table table = [] {
    model_table t;
    // FACT (docs.sailresearch.com/loras): LoRA serving is offered for
    // moonshotai/Kimi-K2.6 (max rank 32, all target modules).
    t.set("moonshotai/Kimi-K2.6", {{}, true});
    return t;
  }();
  return table;
}

caf::expected<model_table> model_table::from_json(std::string_view text) {
  json::error_code ec;
  auto doc = json::parse(text, ec);
  if (ec)
    return invalid_argument("models", "model table is not valid JSON: "
                                        + ec.message());
  auto* root = doc.if_object();
  auto* models = root ? root->if_contains("models") : nullptr;
  if (models == nullptr || !models->is_object())
    return invalid_argument("models", R"(model table needs {"models": {...}})");
  model_table result;
  for (auto& [name, entry] : models->get_object()) {
    std::string field = "models." + std::string{name};
    auto* obj = entry.if_object();
    if (obj == nullptr)
      return invalid_argument(field, "each model maps to an object");
    model_capabilities caps;
    if (auto* ws = obj->if_contains("windows")) {
      if (!ws->is_array())
        return invalid_argument(field + ".windows", "must be a list of strings");
      for (auto& w : ws->get_array()) {
        if (!w.is_string() || w.get_string().empty())
          return invalid_argument(field + ".windows",
                                  "must be a list of non-empty strings");
        caps.windows.emplace_back(w.get_string());
      }
    }
    if (auto* lora = obj->if_contains("lora")) {
      if (!lora->is_bool())
        return invalid_argument(field + ".lora", "must be true or false");
      caps.lora_capable = lora->get_bool();
    }
    for (auto& [key, ignored] : *obj)
      if (key != "windows" && key != "lora")
        return invalid_argument(field + "." + std::string{key}, "unknown key");
    result.set(std::string{name}, std::move(caps));
  }
  return result;
}

void model_table::set(std::string model, model_capabilities caps) {
  models_.insert_or_assign(std::move(model), std::move(caps));
}

const model_capabilities* model_table::find(std::string_view model) const {
  auto i = models_.find(model);
  return i == models_.end() ? nullptr : &i->second;
}

// -- helpers --------------------------------------------------------------------

const std::vector<std::string>& reserved_metadata_keys() {
  static const std::vector<std::string> keys{
    "completion_window", "lora", "tinker_lora_signed_url", "adapter_config",
    "tinker_lora_name", "completion_webhook", "webhook_token",
  };
  return keys;
}

caf::expected<std::string> normalize_adapter_config(std::string_view json_text) {
  json::error_code ec;
  auto doc = json::parse(json_text, ec);
  if (ec)
    return invalid_argument("adapter_config",
                            "adapter_config is not valid JSON: " + ec.message());
  // The contract's second form: a JSON string that itself holds JSON.
  if (doc.is_string()) {
    auto inner = json::parse(doc.get_string(), ec);
    if (ec || !inner.is_object())
      return invalid_argument("adapter_config",
                              "adapter_config must hold a JSON object");
    return json::serialize(inner);
  }
  if (!doc.is_object())
    return invalid_argument("adapter_config",
                            "adapter_config must be a JSON object");
  return json::serialize(doc);
}

int64_t effective_max_tokens(const completer_config& cfg,
                             const sample_request& req) noexcept {
  if (req.max_tokens)
    return std::min(cfg.max_tokens, *req.max_tokens);
  return cfg.max_tokens;
}

namespace {

bool is_header_safe(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f;
  });
}

caf::error check_range(double value, double hi, const char* field,
                       const char* range) {
  if (!std::isfinite(value))
    return invalid_argument(field, std::string{field} + " must be a finite number");
  if (value < 0.0 || value > hi)
    return invalid_argument(field, std::string{field} + " must be within " + range);
  return caf::none;
}

} // namespace

// -- configuration --------------------------------------------------------------

caf::error validate(const completer_config& cfg, const model_table& models) {
  if (cfg.model.empty())
    return invalid_argument("model", "model must not be empty");
  if (cfg.max_tokens <= 0)
    return invalid_argument("max_tokens", "max_tokens must be > 0");
  if (auto err = check_range(cfg.temperature, 2.0, "temperature", "[0, 2]"))
    return err;
  if (auto err = check_range(cfg.top_p, 1.0, "top_p", "[0, 1]"))
    return err;
  if (cfg.completion_window.empty())
    return invalid_argument("completion_window",
                            "completion_window must not be empty");
  if (cfg.lora && cfg.tinker_lora_signed_url)
    return invalid_argument("lora", "lora and tinker_lora_signed_url are "
                                    "mutually exclusive");
  if (cfg.lora && cfg.lora->empty())
    return invalid_argument("lora", "lora must not be empty");
  if (cfg.tinker_checkpoint) {
    if (cfg.lora || cfg.tinker_lora_signed_url)
      return invalid_argument("tinker_checkpoint",
                              "tinker_checkpoint excludes lora and "
                              "tinker_lora_signed_url");
    if (cfg.tinker_checkpoint->rfind("tinker://", 0) != 0)
      return invalid_argument("tinker_checkpoint",
                              "tinker_checkpoint must be a tinker:// path");
    if (!cfg.adapter_config)
      return invalid_argument("adapter_config",
                              "tinker_checkpoint requires adapter_config");
  }
  if (cfg.tinker_ttl_seconds) {
    if (!cfg.tinker_checkpoint)
      return invalid_argument("tinker_ttl_seconds",
                              "tinker_ttl_seconds requires tinker_checkpoint");
    if (*cfg.tinker_ttl_seconds <= 0)
      return invalid_argument("tinker_ttl_seconds",
                              "tinker_ttl_seconds must be > 0");
  }
  if (cfg.tinker_lora_signed_url) {
    if (!is_http_url(*cfg.tinker_lora_signed_url))
      return invalid_argument("tinker_lora_signed_url",
                              "tinker_lora_signed_url must be an http(s) URL");
    if (!cfg.adapter_config)
      return invalid_argument("adapter_config", "tinker_lora_signed_url "
                                                "requires adapter_config");
  }
  // Either form of the contract: a JSON object, or a string holding one.
  if (cfg.adapter_config)
    if (auto normalized = normalize_adapter_config(*cfg.adapter_config); !normalized)
      return std::move(normalized.error());
  // FACT (/completion-windows; the live error text quoted by PokerBench):
  // a LoRA request of either source cannot use asap.
  if (cfg.uses_lora() && cfg.completion_window == "asap")
    return invalid_argument("completion_window", std::string{lora_asap_message});
  for (auto& [key, value] : cfg.metadata) {
    auto& reserved = reserved_metadata_keys();
    if (std::find(reserved.begin(), reserved.end(), key) != reserved.end())
      return invalid_argument("metadata." + key,
                              "metadata key '" + key
                                + "' is set by the completer itself");
    if (key.empty())
      return invalid_argument("metadata", "metadata keys must not be empty");
  }
  if (cfg.timeout && cfg.timeout->count() <= 0)
    return invalid_argument("timeout", "timeout must be > 0");
  if (cfg.voyage) {
    if (cfg.voyage->id.empty() || !is_header_safe(cfg.voyage->id))
      return invalid_argument("voyage.id",
                              "voyage id must be a non-empty printable string");
    if (cfg.voyage->span_id && !is_header_safe(*cfg.voyage->span_id))
      return invalid_argument("voyage.span_id", "must be printable ASCII");
    if (cfg.voyage->agent_id && !is_header_safe(*cfg.voyage->agent_id))
      return invalid_argument("voyage.agent_id", "must be printable ASCII");
  }
  if (auto* caps = models.find(cfg.model)) {
    auto& ws = caps->windows;
    if (!ws.empty()
        && std::find(ws.begin(), ws.end(), cfg.completion_window) == ws.end())
      return invalid_argument("completion_window",
                              "model " + cfg.model + " does not support the "
                                + cfg.completion_window + " window");
    if (cfg.uses_lora() && !caps->lora_capable)
      return invalid_argument(cfg.lora ? "lora"
                              : cfg.tinker_checkpoint ? "tinker_checkpoint"
                                                      : "tinker_lora_signed_url",
                              "model " + cfg.model
                                + " does not support LoRA adapters");
  }
  return caf::none;
}

// -- sample input ---------------------------------------------------------------

caf::error validate(const model_input& prompt) {
  if (prompt.tokens.empty())
    return invalid_argument("prompt", "prompt must not be empty");
  if (prompt.tokens.size() > max_prompt_tokens)
    return invalid_argument("prompt", "prompt has "
                                        + std::to_string(prompt.tokens.size())
                                        + " tokens, at most 2000000 allowed");
  for (size_t i = 0; i < prompt.tokens.size(); ++i) {
    auto t = prompt.tokens[i];
    if (t < 0 || t > max_token_id)
      return invalid_argument("prompt", "token " + std::to_string(t)
                                          + " at index " + std::to_string(i)
                                          + " is outside 0..2147483647");
  }
  return caf::none;
}

caf::error validate(const stop_condition& stop) {
  if (!stop.token_ids.empty() && !stop.strings.empty())
    return invalid_argument("stop", "stop mixes token ids and strings");
  if (stop.bare_string && stop.strings.size() != 1)
    return invalid_argument("stop", "a bare stop string holds exactly one string");
  for (auto t : stop.token_ids)
    if (t < 0 || t > max_token_id)
      return invalid_argument("stop", "stop token " + std::to_string(t)
                                        + " is outside 0..2147483647");
  for (auto& s : stop.strings)
    if (s.empty())
      return invalid_argument("stop", "stop strings must not be empty");
  return caf::none;
}

caf::error validate(const sample_request& req) {
  if (auto err = validate(req.prompt))
    return err;
  if (auto err = validate(req.stop))
    return err;
  if (req.max_tokens && *req.max_tokens <= 0)
    return invalid_argument("max_tokens", "per-call max_tokens must be > 0");
  if (req.key.size() > 255 || !is_header_safe(req.key))
    return invalid_argument("key", "idempotency key must be at most 255 "
                                   "printable ASCII characters");
  if (req.webhook && !req.webhook->empty()) {
    auto& w = *req.webhook;
    if (!is_http_url(w.url) || w.url.size() > 2048 || !is_header_safe(w.url)
        || w.url.find(' ') != std::string::npos)
      return invalid_argument("webhook.url", "a pinned webhook URL must be an http(s) URL "
                                             "of at most 2048 printable characters");
    if (w.token.size() > 256 || !is_header_safe(w.token)
        || w.token.find(' ') != std::string::npos)
      return invalid_argument("webhook.token", "a pinned webhook token must be at most 256 "
                                               "printable characters without spaces");
  }
  // A response id goes into the poll URL (percent-encoded); Sail publishes
  // no length, so the bound is generous.
  if (req.response_id.size() > 1024 || !is_header_safe(req.response_id))
    return invalid_argument("response_id", "response id must be at most 1024 "
                                           "printable ASCII characters");
  // It becomes a path segment of the poll URL, where these are dot segments.
  if (req.response_id == "." || req.response_id == "..")
    return invalid_argument("response_id", "response id must not be '.' or '..'");
  return caf::none;
}

} // namespace sail
