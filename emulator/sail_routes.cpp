// Sail: POST /v1/responses and GET /v1/responses/{id}, validated like Sail
// (OpenAPI CreateResponseRequest), with idempotency as the contract says.
#include <algorithm>
#include <cmath>
#include <limits>
#include <variant>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "sail_tinker/emulator/emulator_impl.hpp"

namespace sail::emulator {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

constexpr int64_t max_token_id = 2147483647;
constexpr size_t max_prompt_tokens = 2'000'000;
constexpr size_t max_idempotency_key = 255;
// OpenAPI CreateResponseRequest.user: maxLength 256 (characters).
constexpr size_t max_user_chars = 256;

struct create_params {
  std::string model;
  std::vector<int64_t> prompt;
  int64_t input_tokens = 0;
  std::optional<int64_t> max_output_tokens;
  double temperature = 1.0;
  double top_p = 1.0;
  std::optional<int64_t> seed;
  std::vector<int64_t> stop_ids;
  std::vector<std::string> stop_strings;
  bool include_logprobs = false;
  bool background = false;
  json::object metadata;  // echoed, without webhook_token
  std::optional<std::string> window;  // explicit metadata.completion_window
  bool uses_lora = false;
  std::string lora;
  std::string signed_url;
  std::string webhook_url;
  bool webhook_invalid = false;  // given but not an http(s) URL: ignored
  std::string webhook_token;
  std::string prompt_cache_key;
  outcome_kind outcome = outcome_kind::completed;
};

struct rejection {
  unsigned status;
  std::string body;
};

rejection bad(std::string_view message, std::string_view param,
              std::string_view code = "invalid_value") {
  return {400, sail_error_body(message, "invalid_request_error", param, code)};
}

std::optional<int64_t> as_integer(const json::value& v) {
  if (v.is_int64())
    return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= uint64_t{INT64_MAX})
    return static_cast<int64_t>(v.get_uint64());
  return std::nullopt;
}

std::optional<double> as_number(const json::value& v) {
  if (v.is_double())
    return v.get_double();
  if (v.is_int64())
    return static_cast<double>(v.get_int64());
  if (v.is_uint64())
    return static_cast<double>(v.get_uint64());
  return std::nullopt;
}

bool is_http_url(std::string_view s) {
  auto rest = s.starts_with("http://")    ? s.substr(7)
              : s.starts_with("https://") ? s.substr(8)
                                          : std::string_view{};
  return !rest.empty() && rest.front() != '/';
}

/// Number of characters (UTF-8 code points) in `s`.
size_t utf8_length(std::string_view s) noexcept {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80)
      ++n;
  return n;
}

bool is_known_window(std::string_view w) {
  auto& ws = known_windows();
  return std::find(ws.begin(), ws.end(), w) != ws.end();
}

std::string window_list() {
  std::string out;
  for (auto& w : known_windows()) {
    if (!out.empty())
      out += ", ";
    out += w;
  }
  return out;
}

/// Which [wire] alternatives the emulator plays (emulator::wire_variant).
struct wire_plays {
  const std::set<wire_variant>& variants;
  bool operator()(wire_variant x) const {
    return variants.count(x) > 0;
  }
};

// The checks of a create body, one per field or pair of fields, each reading
// what it checked into `p`: nullopt if the body passes it, else the 400 Sail
// answers. validate() runs them in the order Sail reports a body's first
// error.

/// model: a non-empty string (required).
std::optional<rejection> read_model(const json::object& o, const wire_plays&, create_params& p) {
  auto* model = o.if_contains("model");
  if (!model)
    return bad("missing required parameter: 'model'", "model",
               "missing_required_parameter");
  if (!model->is_string() || model->get_string().empty())
    return bad("'model' must be a non-empty string", "model", "invalid_type");
  p.model = model->get_string();
  return std::nullopt;
}

/// input (required, ignored with raw_prompt_tokens) and raw_prompt_tokens:
/// the prompt and its input token count.
std::optional<rejection> read_prompt(const json::object& o, const wire_plays&, create_params& p) {
  auto* input = o.if_contains("input");
  if (!input)
    return bad("missing required parameter: 'input'", "input",
               "missing_required_parameter");
  if (input->is_string()) {
    if (input->get_string().empty())
      return bad("'input' must not be empty", "input");
  } else if (input->is_array()) {
    if (input->get_array().empty())
      return bad("'input' must not be empty", "input");
  } else if (!input->is_object()) {
    return bad("'input' must be a string, an array or an object", "input",
               "invalid_type");
  }
  if (auto* raw = o.if_contains("raw_prompt_tokens")) {
    if (!raw->is_array())
      return bad("'raw_prompt_tokens' must be an array of integers",
                 "raw_prompt_tokens", "invalid_type");
    auto& arr = raw->get_array();
    if (arr.empty())
      return bad("'raw_prompt_tokens' must have at least 1 item",
                 "raw_prompt_tokens");
    if (arr.size() > max_prompt_tokens)
      return bad("'raw_prompt_tokens' must have at most 2000000 items",
                 "raw_prompt_tokens");
    p.prompt.reserve(arr.size());
    for (auto& x : arr) {
      auto t = as_integer(x);
      if (!t) {
        if (x.is_uint64())
          return bad("'raw_prompt_tokens' items must be <= 2147483647",
                     "raw_prompt_tokens");
        return bad("'raw_prompt_tokens' items must be integers",
                   "raw_prompt_tokens", "invalid_type");
      }
      if (*t < 0 || *t > max_token_id)
        return bad("'raw_prompt_tokens' items must be in 0..2147483647",
                   "raw_prompt_tokens");
      p.prompt.push_back(*t);
    }
    p.input_tokens = static_cast<int64_t>(p.prompt.size());
  } else {
    auto text = input->is_string() ? std::string{input->get_string()}
                                   : json::serialize(*input);
    auto h = hash_bytes(text);
    p.prompt = {static_cast<int64_t>(h & 0x7fffffff),
                static_cast<int64_t>((h >> 32) & 0x7fffffff)};
    p.input_tokens = std::max<int64_t>(1, static_cast<int64_t>(
                                            (text.size() + 3) / 4));
  }
  return std::nullopt;
}

/// max_output_tokens, temperature, top_p, seed.
std::optional<rejection> read_sampling(const json::object& o, const wire_plays&, create_params& p) {
  if (auto* v = o.if_contains("max_output_tokens"); v && !v->is_null()) {
    auto n = as_integer(*v);
    if (!n)
      return bad("'max_output_tokens' must be an integer", "max_output_tokens",
                 "invalid_type");
    if (*n < 1)
      return bad("'max_output_tokens' must be >= 1", "max_output_tokens");
    p.max_output_tokens = *n;
  }
  if (auto* v = o.if_contains("temperature"); v && !v->is_null()) {
    auto x = as_number(*v);
    if (!x)
      return bad("'temperature' must be a number", "temperature",
                 "invalid_type");
    if (!(*x >= 0.0 && *x <= 2.0))
      return bad("'temperature' must be in 0..2", "temperature");
    p.temperature = *x;
  }
  if (auto* v = o.if_contains("top_p"); v && !v->is_null()) {
    auto x = as_number(*v);
    if (!x)
      return bad("'top_p' must be a number", "top_p", "invalid_type");
    if (!(*x >= 0.0 && *x <= 1.0))
      return bad("'top_p' must be in 0..1", "top_p");
    p.top_p = *x;
  }
  if (auto* v = o.if_contains("seed"); v && !v->is_null()) {
    auto n = as_integer(*v);
    if (!n)
      return bad("'seed' must be an integer", "seed", "invalid_type");
    p.seed = *n;
  }
  return std::nullopt;
}

/// user (at most 256 characters) and prompt_cache_key.
std::optional<rejection> read_user(const json::object& o, const wire_plays&, create_params& p) {
  if (auto* v = o.if_contains("user")) {
    if (!v->is_string())
      return bad("'user' must be a string", "user", "invalid_type");
    if (utf8_length(v->get_string()) > max_user_chars)
      return bad("'user' must be at most 256 characters", "user",
                 "string_above_max_length");
  }
  if (auto* v = o.if_contains("prompt_cache_key"); v && !v->is_null()) {
    if (!v->is_string())
      return bad("'prompt_cache_key' must be a string", "prompt_cache_key",
                 "invalid_type");
    p.prompt_cache_key = v->get_string();
  }
  return std::nullopt;
}

/// stop (token ids or strings, never mixed) and, as the stop-token-ids
/// variant plays, stop_token_ids.
std::optional<rejection> read_stop(const json::object& o, const wire_plays& plays,
                                   create_params& p) {
  if (auto* v = o.if_contains("stop"); v && !v->is_null()) {
    if (v->is_string()) {
      p.stop_strings.emplace_back(v->get_string());
    } else if (v->is_array()) {
      for (auto& x : v->get_array()) {
        if (x.is_string()) {
          p.stop_strings.emplace_back(x.get_string());
        } else if (auto t = as_integer(x); t && *t >= 0 && *t <= max_token_id) {
          // Variant stop-token-ids: ids in `stop` are ignored.
          if (!plays(wire_variant::stop_token_ids))
            p.stop_ids.push_back(*t);
        } else {
          return bad("'stop' items must be token ids or strings", "stop",
                     "invalid_type");
        }
      }
      if (!p.stop_strings.empty() && !p.stop_ids.empty())
        return bad("'stop' must not mix token ids and strings", "stop");
    } else {
      return bad("'stop' must be a string or an array", "stop",
                 "invalid_type");
    }
  }
  if (plays(wire_variant::stop_token_ids))
    if (auto* v = o.if_contains("stop_token_ids"); v && !v->is_null()) {
      if (!v->is_array() || !p.stop_strings.empty())
        return bad("'stop_token_ids' must be an array of token ids (not beside stop strings)",
                   "stop_token_ids", "invalid_type");
      for (auto& x : v->get_array()) {
        auto t = as_integer(x);
        if (!t || *t < 0 || *t > max_token_id)
          return bad("'stop_token_ids' items must be token ids", "stop_token_ids",
                     "invalid_type");
        p.stop_ids.push_back(*t);
      }
    }
  return std::nullopt;
}

/// include's logprobs item (or, as reject-include plays, a logprobs boolean).
std::optional<rejection> read_logprobs(const json::object& o, const wire_plays& plays,
                                       create_params& p) {
  if (plays(wire_variant::reject_include))
    if (auto* v = o.if_contains("logprobs"); v && v->is_bool())
      p.include_logprobs = v->get_bool();
  if (auto* v = o.if_contains("include"); v && !v->is_null()) {
    if (!v->is_array())
      return bad("'include' must be an array of strings", "include",
                 "invalid_type");
    for (auto& x : v->get_array()) {
      if (!x.is_string())
        return bad("'include' must be an array of strings", "include",
                   "invalid_type");
      if (x.get_string() == "message.output_text.logprobs") {
        if (plays(wire_variant::reject_include))
          return bad("'include' value 'message.output_text.logprobs' is not supported",
                     "include", "unsupported_value");
        p.include_logprobs = true;
      }
    }
  }
  return std::nullopt;
}

/// background and stream (never streamed).
std::optional<rejection> read_delivery(const json::object& o, const wire_plays&, create_params& p) {
  if (auto* v = o.if_contains("background"); v && !v->is_null()) {
    if (!v->is_bool())
      return bad("'background' must be a boolean", "background",
                 "invalid_type");
    p.background = v->get_bool();
  }
  if (auto* v = o.if_contains("stream"); v && !v->is_null()) {
    if (!v->is_bool())
      return bad("'stream' must be a boolean", "stream", "invalid_type");
    if (v->get_bool() && p.background)
      return bad("background=true requests cannot be streamed", "stream");
    if (v->get_bool())
      return bad("stream=true is not supported by the emulator", "stream",
                 "unsupported_value");
  }
  return std::nullopt;
}

/// metadata: string values only; the window, the adapter, the emulator's
/// outcome, the webhook (its token never echoed).
std::optional<rejection> read_metadata(const json::object& o, const wire_plays&, create_params& p) {
  if (auto* v = o.if_contains("metadata"); v && !v->is_null()) {
    if (!v->is_object())
      return bad("'metadata' must be an object", "metadata", "invalid_type");
    for (auto& [k, x] : v->get_object()) {
      std::string param = "metadata." + std::string{k};
      if (!x.is_string())
        return bad("metadata values must be strings", param, "invalid_type");
      std::string_view value = x.get_string();
      if (k == "completion_window") {
        if (!is_known_window(value))
          return bad("'completion_window' must be one of " + window_list(),
                     param);
        p.window = std::string{value};
      } else if (k == "lora") {
        p.lora = value;
        p.uses_lora = true;
      } else if (k == "tinker_lora_signed_url") {
        p.signed_url = value;
        p.uses_lora = true;
      } else if (k == "emulator_outcome") {
        if (value == "completed")
          p.outcome = outcome_kind::completed;
        else if (value == "incomplete")
          p.outcome = outcome_kind::incomplete;
        else if (value == "failed")
          p.outcome = outcome_kind::failed;
        else if (value == "cancelled")
          p.outcome = outcome_kind::cancelled;
        else
          return bad("'emulator_outcome' must be one of completed, "
                     "incomplete, failed, cancelled",
                     param);
      } else if (k == "adapter_config") {
        boost::system::error_code ec2;
        auto cfg = json::parse(value, ec2);
        if (ec2 || !cfg.is_object())
          return bad("'adapter_config' must be a JSON object string", param);
      } else if (k == "completion_webhook") {
        // Sail (/webhooks): an invalid URL silently means no webhook.
        if (is_http_url(value))
          p.webhook_url = value;
        else
          p.webhook_invalid = true;
      } else if (k == "webhook_token") {
        p.webhook_token = value;
        continue; // never echoed
      }
      p.metadata[k] = x;
    }
  }
  return std::nullopt;
}

/// What the fields allow only together.
std::optional<rejection> check_combinations(const json::object&, const wire_plays&,
                                            create_params& p) {
  // Sail's live error text (quoted by the public PokerBench example).
  if (p.uses_lora && p.window == "asap")
    return bad("lora requests cannot use completion_window=asap",
               "metadata.completion_window", "unsupported_value");
  if (p.window == "flex" && !p.background)
    return bad("the flex completion window requires background=true",
               "metadata.completion_window", "unsupported_value");
  return std::nullopt;
}

/// A create body checked like Sail: its params, or the 400 of the first
/// check it fails.
std::variant<create_params, rejection>
validate(std::string_view body, const std::set<wire_variant>& variants) {
  boost::system::error_code ec;
  auto parsed = json::parse(body, ec);
  if (ec)
    return bad("the request body is not valid JSON", "body", "invalid_json");
  if (!parsed.is_object())
    return bad("the request body must be a JSON object", "body",
               "invalid_type");
  using check = std::optional<rejection> (*)(const json::object&, const wire_plays&,
                                             create_params&);
  create_params p;
  for (check step : {read_model, read_prompt, read_sampling, read_user, read_stop,
                     read_logprobs, read_delivery, read_metadata, check_combinations})
    if (auto r = step(parsed.get_object(), wire_plays{variants}, p))
      return std::move(*r);
  return p;
}

/// The window a request runs in: the explicit one if the model supports it
/// (an explicit value never falls back: docs/wire-contract.md), else a rejection; when
/// omitted, standard if supported, else flex for background requests if
/// supported, else the model's first window (OpenAPI RequestMetadata).
std::variant<std::string, rejection>
choose_window(const options& opts, const create_params& p) {
  auto i = opts.model_windows.find(p.model);
  if (i == opts.model_windows.end()) {
    if (p.window)
      return *p.window;
    return std::string{"standard"};
  }
  auto& supported = i->second;
  if (p.window) {
    if (supported.count(*p.window) == 0)
      return bad("completion_window=" + *p.window + " is not supported for "
                   + "model " + p.model,
                 "metadata.completion_window", "unsupported_value");
    return *p.window;
  }
  if (supported.count("standard"))
    return std::string{"standard"};
  if (p.background && supported.count("flex"))
    return std::string{"flex"};
  for (auto& w : known_windows())
    if (supported.count(w) && !(w == "asap" && p.uses_lora)
        && !(w == "flex" && !p.background))
      return w;
  return bad("model " + p.model + " supports no completion window for this "
               "request",
             "metadata.completion_window", "unsupported_value");
}

const char* terminal_word(outcome_kind k) noexcept {
  switch (k) {
    case outcome_kind::completed:
      return "completed";
    case outcome_kind::incomplete:
      return "incomplete";
    case outcome_kind::failed:
      return "failed";
    case outcome_kind::cancelled:
      return "cancelled";
  }
  return "completed";
}

bool is_status_fault(fault_kind k) {
  return k <= fault_kind::status_504;
}

} // namespace

// -- rendering ------------------------------------------------------------------------

const char* server::impl::status_word(const response_record& rec,
                                      response_phase phase) const noexcept {
  bool openapi = opts.vocabulary == status_vocabulary::openapi;
  switch (phase) {
    case response_phase::queued:
      return openapi ? "pending" : "queued";
    case response_phase::in_progress:
      return openapi ? "running" : "in_progress";
    case response_phase::terminal:
      break;
  }
  return terminal_word(rec.outcome);
}

int64_t server::impl::cached_prefix(const std::string& cache_key,
                                    const std::vector<int64_t>& prompt) {
  if (opts.prompt_cache_min_tokens <= 0 || opts.prompt_cache_entries == 0)
    return 0;
  auto& earlier = prompt_cache[cache_key];
  size_t best = 0;
  for (auto& x : earlier) {
    auto n = static_cast<size_t>(
      std::mismatch(x.begin(), x.end(), prompt.begin(), prompt.end()).first - x.begin());
    best = std::max(best, n);
  }
  // A prompt equal to one remembered adds nothing new to compare against.
  if (best < prompt.size() || earlier.empty()) {
    if (earlier.size() >= opts.prompt_cache_entries)
      earlier.erase(earlier.begin());
    earlier.push_back(prompt);
  }
  auto cached = static_cast<int64_t>(best);
  return cached >= opts.prompt_cache_min_tokens ? cached : 0;
}

json::object server::impl::render(const response_record& rec,
                                  steady::time_point now, bool fresh) const {
  auto phase = fresh ? response_phase::queued : rec.phase_at(now);
  bool terminal = phase == response_phase::terminal;
  // Output and billed usage exist once the response is completed or
  // incomplete (an incomplete response can carry billed usage and partial
  // output: docs/wire-contract.md).
  bool has_output = terminal
                    && (rec.outcome == outcome_kind::completed
                        || rec.outcome == outcome_kind::incomplete);
  json::object o;
  o["id"] = rec.id;
  o["object"] = "response";
  o["status"] = status_word(rec, phase);
  o["model"] = rec.model;
  o["created_at"] = rec.created_at;
  if (terminal && opts.emit_completed_at) {
    auto wall = rec.accepted_wall
                + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                  rec.done - rec.accepted);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                wall.time_since_epoch())
                .count();
    o["completed_at"] = static_cast<double>(ms) / 1000.0;
  }
  o["metadata"] = rec.metadata;
  json::array output;
  if (has_output) {
    json::object part;
    part["type"] = "output_text";
    part["text"] = rec.result.text;
    json::array ids;
    ids.reserve(rec.result.token_ids.size());
    for (auto t : rec.result.token_ids)
      ids.push_back(t);
    part["token_ids"] = std::move(ids);
    if (rec.include_logprobs) {
      json::array lps;
      lps.reserve(rec.result.logprobs.size());
      for (auto x : rec.result.logprobs)
        lps.push_back(x);
      part["logprobs"] = std::move(lps);
    }
    // An incomplete response says why in incomplete_details only.
    if (rec.outcome == outcome_kind::completed)
      part["stop_reason"] = rec.result.stop_reason;
    if (opts.wire_variants.count(wire_variant::top_level) > 0)
      for (auto key : {"token_ids", "logprobs", "stop_reason"})
        if (auto* x = part.if_contains(key)) {
          o[key] = std::move(*x);
          part.erase(key);
        }
    json::array content;
    content.push_back(std::move(part));
    json::object msg;
    msg["type"] = "message";
    msg["role"] = "assistant";
    msg["content"] = std::move(content);
    output.push_back(std::move(msg));
  }
  o["output"] = std::move(output);
  if (terminal && rec.outcome == outcome_kind::incomplete)
    o["incomplete_details"] = json::object{{"reason", "max_output_tokens"}};
  else
    o["incomplete_details"] = nullptr;
  // usage is a required ResponseUsage object (OpenAPI): zeros until billed.
  // A failed or cancelled response bills nothing here (stats::billed_*): the
  // emulator's assumption; Sail documents only that an incomplete response
  // can carry billed usage. The budgets keep a failed sample's worst case.
  auto in_tokens = has_output ? rec.input_tokens : 0;
  auto cached = has_output ? rec.cached_tokens : 0;
  auto out_tokens = has_output
                      ? static_cast<int64_t>(rec.result.token_ids.size())
                      : 0;
  json::object in_details;
  in_details["cached_tokens"] = cached;
  in_details["reasoning_tokens"] = 0;
  json::object out_details;
  out_details["cached_tokens"] = 0;
  out_details["reasoning_tokens"] = 0;
  json::object usage;
  usage["input_tokens"] = in_tokens;
  usage["input_tokens_details"] = std::move(in_details);
  usage["output_tokens"] = out_tokens;
  usage["output_tokens_details"] = std::move(out_details);
  usage["total_tokens"] = in_tokens + out_tokens;
  o["usage"] = std::move(usage);
  if (terminal && rec.outcome == outcome_kind::failed)
    o["error"] = json::object{
      {"code", "server_error"},
      {"message", "the response failed (emulator_outcome=failed)"}};
  else if (terminal && rec.outcome == outcome_kind::cancelled)
    o["error"] = json::object{
      {"code", "cancelled"},
      {"message", "the response was cancelled (emulator_outcome=cancelled)"}};
  else
    o["error"] = nullptr;
  o["background"] = rec.background;
  if (rec.max_output_tokens)
    o["max_output_tokens"] = *rec.max_output_tokens;
  else
    o["max_output_tokens"] = nullptr;
  o["temperature"] = rec.temperature;
  o["top_p"] = rec.top_p;
  return o;
}

void server::impl::serve_record(http_server_context&& ctx,
                                const char* route_name, record_ptr rec,
                                unsigned status, bool fresh,
                                const fault_draw& d,
                                const std::string& arrival_key, bool poll) {
  auto now = steady::now();
  auto obj = render(*rec, now, fresh);
  bool terminal = !fresh && rec->phase_at(now) == response_phase::terminal;
  // Only a body that carries an output part can lose its token_ids.
  bool completed = terminal && !obj["output"].as_array().empty();
  std::string fault_name;
  bool truncate = false;
  bool malformed = false;
  if (d.kind) {
    switch (*d.kind) {
      case fault_kind::missing_token_ids:
        if (completed) {
          auto& part = obj["output"].as_array()[0].as_object()["content"]
                         .as_array()[0]
                         .as_object();
          part.erase("token_ids");
          fault_name = to_string(*d.kind);
        }
        break;
      case fault_kind::logprob_mismatch:
        if (completed) {
          auto& part = obj["output"].as_array()[0].as_object()["content"]
                         .as_array()[0]
                         .as_object();
          auto n = rec->result.token_ids.size();
          json::array lps;
          // One entry more than there are tokens.
          for (size_t i = 0; i <= n; ++i)
            lps.push_back(i < rec->result.logprobs.size()
                            ? rec->result.logprobs[i]
                            : -1.0);
          part["logprobs"] = std::move(lps);
          fault_name = to_string(*d.kind);
        }
        break;
      case fault_kind::truncated_body:
        truncate = true;
        fault_name = to_string(*d.kind);
        break;
      case fault_kind::malformed_json:
        malformed = true;
        fault_name = to_string(*d.kind);
        break;
      default:
        break;
    }
  }
  auto body = json::serialize(obj);
  if (malformed) {
    body.resize(body.size() / 2);
    body += "\"<<malformed";
  }
  auto reply = json_reply(status, std::move(body));
  if (truncate) {
    reply.fault = wire_fault::truncate_body;
    reply.truncate_at = reply.response.body().size() / 2;
  }
  if (!fault_name.empty())
    count_fault(*d.kind);
  if (d.slow) {
    reply.delay = d.slow_delay;
    count_fault(fault_kind::slow_response);
    if (fault_name.empty())
      fault_name = to_string(fault_kind::slow_response);
  }
  record_arrival(poll, arrival_key, ctx.received_at(), static_cast<int>(status),
                 fault_name);
  if (terminal && !rec->idempotency_key.empty()) {
    std::lock_guard guard{mtx};
    auto i = st.timings.find(rec->idempotency_key);
    if (i != st.timings.end() && i->second.delivered_ms < 0) {
      i->second.delivered_ms = ms_since_start(now);
      st_changed.notify_all();
    }
  }
  finish(std::move(ctx), route_name, std::move(reply), fault_name);
}

// -- POST /v1/responses ---------------------------------------------------------------

void server::impl::finish_with_fault(http_server_context&& ctx, const char* route_name,
                                     bool poll, bool record, const std::string& arrival_key,
                                     steady::time_point arrived, fault_kind kind,
                                     const fault_draw& d) {
  count_fault(kind);
  fault_reply reply;
  if (kind == fault_kind::connection_reset)
    reply.fault = wire_fault::reset;
  else
    reply = fault_status_reply(kind, d, false);
  if (d.slow) {
    reply.delay = d.slow_delay;
    count_fault(fault_kind::slow_response);
  }
  if (record)
    record_arrival(poll, arrival_key, arrived,
                   kind == fault_kind::connection_reset
                     ? 0
                     : static_cast<int>(reply.response.result_int()),
                   to_string(kind));
  finish(std::move(ctx), route_name, std::move(reply), to_string(kind));
}

namespace {

/// A create's Idempotency-Key header (`given`: sent, maybe empty).
struct create_key {
  std::string value;
  bool given = false;
};

create_key idempotency_key_of(const http_server_request& req) {
  create_key key;
  if (auto i = req.find("Idempotency-Key"); i != req.end()) {
    key.given = true;
    key.value = std::string{i->value()};
  }
  return key;
}

/// A create that passed every check: what it asks for and its window.
struct acceptable_create {
  create_params p;
  std::string window;
};

/// The API key, then the Idempotency-Key header's length.
std::optional<rejection> check_credentials(const server::impl& self,
                                           const http_server_request& req,
                                           const create_key& key) {
  if (req[http::field::authorization] != "Bearer " + self.opts.sail_api_key)
    return rejection{401, sail_error_body("invalid or missing API key",
                                          "authentication_error", std::nullopt,
                                          "invalid_api_key")};
  if (key.given && (key.value.empty() || key.value.size() > max_idempotency_key))
    return rejection{400, sail_error_body("Idempotency-Key must be 1..255 "
                                          "characters",
                                          "invalid_request_error",
                                          "Idempotency-Key",
                                          "invalid_idempotency_key")};
  return std::nullopt;
}

/// The adapter: an archive URL this emulator handed out must not have
/// expired (counted), a LoRA name must be known (404).
std::optional<rejection> check_adapter(server::impl& self, const create_params& p) {
  if (!p.signed_url.empty() && self.is_expired_archive_url(p.signed_url)) {
    {
      std::lock_guard guard{self.mtx};
      ++self.st.expired_signed_urls;
      self.st_changed.notify_all();
    }
    // Names the field, never the URL (its query string is a secret).
    return rejection{400, sail_error_body("metadata.tinker_lora_signed_url has "
                                          "expired",
                                          "invalid_request_error",
                                          "metadata.tinker_lora_signed_url",
                                          "expired_signed_url")};
  }
  if (!p.lora.empty()) {
    bool known;
    {
      std::lock_guard guard{self.mtx};
      known = self.known_loras.count(p.lora) > 0;
    }
    if (!known)
      return rejection{404, sail_error_body("lora not found", "not_found_error",
                                            "metadata.lora", "lora_not_found")};
  }
  return std::nullopt;
}

/// Every check of a create before anything is reserved, in Sail's order:
/// credentials, the body (validate), the window, the adapter.
std::variant<acceptable_create, rejection>
check_create(server::impl& self, const http_server_request& req, const create_key& key) {
  if (auto r = check_credentials(self, req, key))
    return std::move(*r);
  auto checked = validate(req.body(), self.opts.wire_variants);
  if (auto* r = std::get_if<rejection>(&checked))
    return std::move(*r);
  auto& p = std::get<create_params>(checked);
  auto chosen = choose_window(self.opts, p);
  if (auto* r = std::get_if<rejection>(&chosen))
    return std::move(*r);
  if (auto r = check_adapter(self, p))
    return std::move(*r);
  return acceptable_create{std::move(p), std::get<std::string>(std::move(chosen))};
}

/// When a drawn fault answers a create: before acceptance (nothing is
/// reserved) or after it (the task exists, the answer is lost). Neither:
/// no fault, or one that mangles the accepted answer (serve_record).
struct create_fault_timing {
  bool before_accept = false;
  bool after_accept = false;
};

create_fault_timing timing_of(const fault_draw& d) {
  create_fault_timing t;
  if (!d.kind)
    return t;
  auto k = *d.kind;
  t.before_accept = k == fault_kind::status_429 || k == fault_kind::status_529
                    || ((is_status_fault(k) || k == fault_kind::connection_reset)
                        && !d.after_accept);
  t.after_accept = !t.before_accept
                   && (is_status_fault(k) || k == fault_kind::connection_reset);
  return t;
}

/// What the toy model runs for a create (its prompt moved out of `p`). An
/// incomplete response ran into max_output_tokens: no stop applies.
sample_params sample_params_of(const server::impl& self, create_params& p,
                               const create_key& key) {
  sample_params sp;
  sp.prompt = std::move(p.prompt);
  sp.model = p.model;
  sp.temperature = p.temperature;
  sp.top_p = p.top_p;
  sp.seed = p.seed;
  sp.idempotency_key = key.value;
  sp.max_output_tokens = p.max_output_tokens.value_or(
    self.opts.default_max_output_tokens);
  if (p.outcome != outcome_kind::incomplete) {
    sp.stop_token_ids = p.stop_ids;
    sp.stop_strings = p.stop_strings;
  }
  return sp;
}

/// The response record of an accepted create: its id, usage, timeline
/// (the window's latency) and webhook (with its drawn faults). Under mtx.
std::shared_ptr<response_record> make_record(server::impl& self, acceptable_create& c,
                                             const create_key& key, sample_result result,
                                             const std::vector<int64_t>& prompt) {
  auto& p = c.p;
  auto r = std::make_shared<response_record>();
  char buf[40];
  std::snprintf(buf, sizeof(buf), "resp_%08llx%012llx",
                static_cast<unsigned long long>(mix64(self.opts.seed)
                                                & 0xffffffffull),
                static_cast<unsigned long long>(++self.next_response));
  r->id = buf;
  r->idempotency_key = key.value;
  r->model = p.model;
  r->metadata = std::move(p.metadata);
  r->created_at = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  r->background = p.background;
  r->max_output_tokens = p.max_output_tokens;
  r->temperature = p.temperature;
  r->top_p = p.top_p;
  r->include_logprobs = p.include_logprobs;
  r->input_tokens = p.input_tokens;
  if (!p.prompt_cache_key.empty())
    r->cached_tokens = std::min(r->input_tokens,
                                self.cached_prefix(p.prompt_cache_key, prompt));
  r->result = std::move(result);
  auto& w = self.latency.of(c.window);
  r->outcome = p.outcome;
  r->accepted = steady::now();
  r->accepted_wall = std::chrono::system_clock::now();
  r->started = r->accepted + w.queued
               + w.spread.draw(self.opts.seed, key.given ? key.value : r->id);
  r->done = r->started
            + w.per_token
                * static_cast<int64_t>(r->result.token_ids.size());
  r->webhook_url = std::move(p.webhook_url);
  r->webhook_token = std::move(p.webhook_token);
  if (!r->webhook_url.empty()) {
    std::uniform_real_distribution<double> u{0.0, 1.0};
    r->webhook_dropped = u(self.webhook_rng) < self.faults.webhook_drop;
    r->webhook_twice = u(self.webhook_rng) < self.faults.webhook_duplicate;
    r->webhook_delay = self.faults.webhook_delay;
  }
  return r;
}

/// Counts a newly accepted create in the stats: the response, its
/// inference run (per key), the billed usage, an ignored webhook. Under mtx.
void count_accepted(server::impl& self, const response_record& r, const create_params& p,
                    const create_key& key) {
  auto& st = self.st;
  ++st.responses;
  ++st.inference_runs_total;
  if (r.outcome == outcome_kind::completed || r.outcome == outcome_kind::incomplete) {
    st.billed_input_tokens += static_cast<uint64_t>(r.input_tokens);
    st.billed_cached_tokens += static_cast<uint64_t>(r.cached_tokens);
    st.billed_output_tokens += r.result.token_ids.size();
  }
  if (p.webhook_invalid)
    ++st.webhooks.ignored_invalid;
  if (key.given) {
    auto n = ++st.inference_runs[key.value];
    st.max_runs_per_key = std::max(st.max_runs_per_key, n);
    st.prompt_cache_keys[key.value] = p.prompt_cache_key;
    st.timings[key.value] = response_timing{r.id, self.ms_since_start(r.accepted),
                                            self.ms_since_start(r.done), -1};
  } else {
    ++st.inference_runs_without_key;
  }
}

/// What a create's reservation holds after reserve_or_run.
struct reserved_create {
  record_ptr rec;
  /// This request created `rec`.
  bool fresh = false;
  /// The key was reserved for another body: no record.
  bool conflict = false;
};

/// The reservation keyed by (API key, Idempotency-Key), the body
/// fingerprinted: the record of an earlier create with the same body, a
/// conflict, or a new record (inference outside the lock; published only if
/// nobody won the race).
reserved_create reserve_or_run(server::impl& self, std::string_view body,
                               acceptable_create& c, const create_key& key) {
  auto fingerprint = key.given ? sha256_hex(body) : std::string{};
  auto rkey = key.given ? self.opts.sail_api_key + '\n' + key.value : std::string{};
  reserved_create out;
  auto lookup = [&] {
    auto i = self.reservations.find(rkey);
    if (i == self.reservations.end())
      return;
    if (i->second.fingerprint != fingerprint)
      out.conflict = true;
    else
      out.rec = i->second.record;
  };
  if (key.given) {
    std::lock_guard guard{self.mtx};
    lookup();
  }
  if (out.rec || out.conflict)
    return out;
  auto sp = sample_params_of(self, c.p, key);
  auto result = sample(sp, self.opts.seed);
  std::lock_guard guard{self.mtx};
  if (key.given)
    lookup();
  if (out.rec || out.conflict)
    return out;
  auto r = make_record(self, c, key, std::move(result), sp.prompt);
  out.rec = r;
  out.fresh = true;
  self.responses.emplace(r->id, out.rec);
  if (key.given)
    self.reservations.emplace(rkey, reservation{fingerprint, out.rec});
  count_accepted(self, *r, c.p, key);
  self.st_changed.notify_all();
  return out;
}

/// Answers an accepted create: 202 at once in the background, else 200 when
/// the task completes (a timer, never a blocked thread).
void answer_accepted(server::impl& self, http_server_context&& ctx, record_ptr rec,
                     bool fresh, const fault_draw& d, const std::string& key) {
  if (rec->background)
    return self.serve_record(std::move(ctx), route::create, rec, 202, fresh, d, key,
                             false);
  if (steady::now() >= rec->done)
    return self.serve_record(std::move(ctx), route::create, rec, 200, false, d, key,
                             false);
  auto timer = std::make_shared<asio::steady_timer>(ctx.executor(), rec->done);
  timer->async_wait([self = &self, timer, rec, d, key,
                     c = std::move(ctx)](boost::system::error_code ec) mutable {
    if (ec)
      return;
    self->serve_record(std::move(c), route::create, rec, 200, false, d, key, false);
  });
}

} // namespace

void server::impl::handle_create(http_server_context&& ctx) {
  auto& req = ctx.request();
  auto arrived = ctx.received_at();
  auto key = idempotency_key_of(req);
  auto reject = [&](unsigned status, std::string body) {
    if (key.given && key.value.size() <= max_idempotency_key)
      record_arrival(false, key.value, arrived, static_cast<int>(status), {});
    finish(std::move(ctx), route::create, json_reply(status, std::move(body)));
  };
  auto checked = check_create(*this, req, key);
  if (auto* r = std::get_if<rejection>(&checked))
    return reject(r->status, std::move(r->body));
  auto& c = std::get<acceptable_create>(checked);
  // Faults that happen before acceptance reserve nothing.
  auto d = draw_faults(route_create);
  auto timing = timing_of(d);
  if (timing.before_accept)
    return finish_with_fault(std::move(ctx), route::create, false, key.given, key.value,
                             arrived, *d.kind, d);
  auto res = reserve_or_run(*this, req.body(), c, key);
  if (res.conflict)
    return reject(400, sail_error_body("Idempotency-Key was already used "
                                       "with a different request body",
                                       "idempotency_error", "Idempotency-Key",
                                       "idempotency_error"));
  if (res.fresh && !res.rec->webhook_url.empty())
    schedule_webhook(res.rec);
  if (timing.after_accept) // "503 after acceptance": the task exists, the answer is lost.
    return finish_with_fault(std::move(ctx), route::create, false, key.given, key.value,
                             arrived, *d.kind, d);
  answer_accepted(*this, std::move(ctx), res.rec, res.fresh, d, key.value);
}

// -- GET /v1/responses/{id} -----------------------------------------------------------

void server::impl::handle_poll(http_server_context&& ctx, std::string id) {
  auto& req = ctx.request();
  auto arrived = ctx.received_at();
  if (req[http::field::authorization] != "Bearer " + opts.sail_api_key) {
    record_arrival(true, id, arrived, 401, {});
    return finish(std::move(ctx), route::poll,
                  json_reply(401, sail_error_body("invalid or missing API key",
                                                  "authentication_error",
                                                  std::nullopt,
                                                  "invalid_api_key")));
  }
  record_ptr rec;
  {
    std::lock_guard guard{mtx};
    if (auto i = responses.find(id); i != responses.end())
      rec = i->second;
  }
  if (!rec) {
    record_arrival(true, id, arrived, 404, {});
    return finish(std::move(ctx), route::poll,
                  json_reply(404, sail_error_body("response not found",
                                                  "invalid_request_error", "id",
                                                  "response_not_found")));
  }
  auto d = draw_faults(route_poll);
  if (d.kind
      && (is_status_fault(*d.kind) || *d.kind == fault_kind::connection_reset)) {
    return finish_with_fault(std::move(ctx), route::poll, true, true, id, arrived, *d.kind,
                             d);
  }
  serve_record(std::move(ctx), route::poll, rec, 200, false, d, id, true);
}

} // namespace sail::emulator
