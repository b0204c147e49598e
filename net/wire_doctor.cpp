#include "sail_tinker/net/wire_doctor.hpp"

#include <future>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

namespace sail {

namespace json = boost::json;

namespace {

constexpr size_t max_shown_body = 2048;

/// The error's message without its attached body (shown on its own).
std::string message_of(const caf::error& err) {
  auto* info = info_of(err);
  return redact_secrets(info != nullptr ? info->message : render(err));
}

std::string shown_body(std::string_view body) {
  auto text = redact_secrets(body.substr(0, max_shown_body));
  if (body.size() > max_shown_body)
    text += "...[cut]";
  return text;
}

/// The outcome of one sample.
struct probe {
  bool accepted = false;  ///< the create was answered 2xx
  unsigned status = 0;    ///< the failing HTTP status (0: none)
  std::string body;       ///< the terminal response, or the error body
  std::string error;      ///< what went wrong, in words (redacted)
};

/// Synchronous calls over the asynchronous client, on its own io thread.
class doctor_session {
public:
  explicit doctor_session(const doctor_options& opts) : opts_(opts) {
  }

  ~doctor_session() {
    // The runtime's order: idle connections closed, the io thread stopped,
    // then the client.
    if (client_)
      client_->close_idle();
    work_.reset();
    io_.stop();
    if (thread_.joinable())
      thread_.join();
    client_.reset();
  }

  caf::error start() {
    auto client = http_client::make(io_, opts_.http);
    if (!client)
      return std::move(client.error());
    client_.emplace(std::move(*client));
    work_.emplace(io_.get_executor());
    thread_ = std::thread{[this] { io_.run(); }};
    return caf::none;
  }

  caf::expected<http_response> call(http_request req) {
    std::promise<caf::expected<http_response>> done;
    auto fut = done.get_future();
    client_->async_request(std::move(req), [&done](caf::expected<http_response> res) {
      done.set_value(std::move(res));
    });
    return fut.get();
  }

  /// One sample: create (transient statuses retried under the same key and
  /// body), then polls until a terminal status or the sample timeout.
  probe sample(const completer_config& cfg, const sample_request& req, const wire_options& wire) {
    probe out;
    // The input rules are validate()'s (encode_create keeps wire invariants
    // only): a probe built from the server's output (a stop token) is
    // checked here, so a bad one is refused locally, never sent.
    if (auto err = sail::validate(req)) {
      out.error = render(err);
      return out;
    }
    ++sent;
    auto key = boost::uuids::to_string(uuids_());
    auto encoded = encode_create(cfg, req, key, true, nullptr, wire);
    if (!encoded) {
      out.error = render(encoded.error());
      return out;
    }
    auto until = std::chrono::steady_clock::now() + opts_.sample_timeout;
    http_request create;
    create.method = boost::beast::http::verb::post;
    create.url = opts_.base_url + std::string{create_target};
    create.headers = encoded->headers;
    create.headers.push_back(bearer_auth(opts_.api_key));
    create.body = encoded->body;
    create.deadline = std::chrono::seconds(60);
    caf::expected<http_response> res{http_response{}};
    for (int attempt = 1;; ++attempt) {
      res = call(create);
      bool transient = !res
                       || res->status == 429 || res->status == 502 || res->status == 503
                       || res->status == 504 || res->status == 529;
      if (!transient || attempt == 4 || std::chrono::steady_clock::now() > until)
        break;
      std::this_thread::sleep_for(std::chrono::seconds(attempt));
    }
    if (!res) {
      out.error = redact_secrets(render(res.error()));
      return out;
    }
    if (res->status < 200 || res->status > 299) {
      out.status = res->status;
      out.body = res->body;
      out.error = message_of(error_from_status(res->status, res->body));
      return out;
    }
    out.accepted = true;
    auto state = decode_state(res->body);
    auto body = std::move(res->body);
    auto delay = std::chrono::milliseconds(100);
    while (state && state->phase != response_phase::terminal) {
      if (std::chrono::steady_clock::now() + delay > until) {
        out.error = "no terminal status within the sample timeout (last: " + state->status + ")";
        return out;
      }
      std::this_thread::sleep_for(delay);
      delay = std::min<std::chrono::milliseconds>(delay * 3 / 2, std::chrono::seconds(5));
      http_request poll;
      poll.url = opts_.base_url + poll_target(state->id);
      poll.headers.push_back(bearer_auth(opts_.api_key));
      poll.deadline = std::chrono::seconds(60);
      auto got = call(std::move(poll));
      if (!got || got->status >= 500 || got->status == 429 || got->status == 408)
        continue; // transient: poll again
      if (got->status < 200 || got->status > 299) {
        out.status = got->status;
        out.body = got->body;
        out.error = message_of(error_from_status(got->status, got->body));
        return out;
      }
      body = std::move(got->body);
      state = decode_state(body);
    }
    if (!state) {
      out.error = message_of(state.error());
      out.body = std::move(body);
      return out;
    }
    out.body = std::move(body);
    return out;
  }

  int sent = 0;

private:
  const doctor_options& opts_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::optional<http_client> client_;
  std::thread thread_;
  boost::uuids::random_generator uuids_;
};

doctor_check make_check(std::string id, std::string name, std::string setting,
                        std::string checked) {
  doctor_check c;
  c.id = std::move(id);
  c.name = std::move(name);
  c.setting = std::move(setting);
  c.checked = std::move(checked);
  c.verdict = "not_checked";
  return c;
}

void refused(doctor_check& c, const probe& p) {
  c.verdict = p.status != 0 ? "refused" : "failed";
  c.status = p.status;
  c.body = shown_body(p.body);
  c.detail = p.error;
}

/// The decoded output of a terminal body under `wire`'s layout.
caf::expected<tokens_with_logprobs> decode(const probe& p, const wire_options& wire) {
  return decode_result(p.body, wire);
}

} // namespace

caf::error doctor_options::validate() const {
  if (base_url.empty())
    return invalid_argument("base-url", "no Sail endpoint");
  if (api_key.empty())
    return make_error(errc::not_configured, "SAIL_API_KEY is not set");
  if (model.empty())
    return invalid_argument("model", "model must not be empty");
  if (prompt.empty() || prompt.size() > 16)
    return invalid_argument("prompt", "the doctor's prompt has 1..16 tokens");
  if (auto err = sail::validate(model_input{prompt}))
    return err;
  if (max_tokens < 1 || max_tokens > 8)
    return invalid_argument("max-tokens", "the doctor's samples have 1..8 output tokens");
  if (!tinker_path.empty()) {
    if (auto p = parse_tinker_path(tinker_path); !p)
      return std::move(p.error());
    if (tinker_api_key.empty())
      return make_error(errc::not_configured, "--tinker-path needs TINKER_API_KEY");
    if (adapter_config.empty())
      return invalid_argument("adapter-config", "--tinker-path needs --adapter-config");
    if (auto n = normalize_adapter_config(adapter_config); !n)
      return std::move(n.error());
  }
  return wire.validate("wire.");
}

int doctor_options::max_samples() const {
  int n = wire.logprobs == "none" ? 1 : 3;
  if (wire.stop_field != "none")
    n += 2;
  if (!tinker_path.empty())
    n += 1;
  return n;
}

caf::expected<doctor_report> run_doctor(const doctor_options& opts) {
  if (auto err = opts.validate())
    return err;
  doctor_report report;
  report.configured = opts.wire;
  report.working = opts.wire;
  report.max_samples = opts.max_samples();
  report.max_prompt_tokens = report.max_samples * static_cast<int64_t>(opts.prompt.size());
  report.max_output_tokens = report.max_samples * opts.max_tokens;
  if (!opts.spend)
    return report;
  report.sent = true;
  doctor_session session{opts};
  if (auto err = session.start())
    return err;
  auto& working = report.working;
  completer_config cfg;
  cfg.model = opts.model;
  cfg.completion_window = opts.completion_window;
  cfg.max_tokens = opts.max_tokens;
  cfg.temperature = 0.0;
  cfg.top_p = 1.0;
  cfg.request_logprobs = true;
  sample_request req;
  req.prompt = model_input{opts.prompt};
  // -- A2 logprobs and D1-D4 layout: the baseline sample -----------------------
  auto a2 = make_check("A2", "logprobs switch", "wire.logprobs", opts.wire.logprobs);
  auto d = make_check("D1-D4", "response layout (token ids, logprobs, stop reason)",
                      "wire.layout", opts.wire.layout);
  std::optional<probe> baseline;
  std::optional<tokens_with_logprobs> out;
  // Decodes a successful probe: the configured layout, else another one.
  auto decode_any = [&](const probe& p) -> std::optional<tokens_with_logprobs> {
    auto x = decode(p, working);
    if (x && !x->tokens.empty())
      return std::move(*x);
    for (auto& layout : wire_options::layout_choices()) {
      if (layout == working.layout)
        continue;
      auto alt = working;
      alt.layout = layout;
      if (auto y = decode(p, alt); y && !y->tokens.empty()) {
        working.layout = layout;
        return std::move(*y);
      }
    }
    return std::nullopt;
  };
  std::vector<std::string> modes{opts.wire.logprobs};
  if (opts.wire.logprobs != "none")
    for (auto& m : wire_options::logprobs_choices())
      if (m != opts.wire.logprobs)
        modes.push_back(m);
  for (auto& mode : modes) {
    auto w = working;
    w.logprobs = mode;
    cfg.request_logprobs = mode != "none";
    auto p = session.sample(cfg, req, w);
    bool first = mode == modes.front();
    if (!p.accepted || !p.error.empty()) {
      if (first)
        refused(a2, p);
      continue;
    }
    std::optional<tokens_with_logprobs> got;
    if (!baseline) {
      got = decode_any(p);
      if (!got) {
        d.verdict = "failed";
        d.detail = "no layout finds the output: " + message_of(decode(p, opts.wire).error());
        d.body = shown_body(p.body);
        baseline = p;
        break;
      }
      baseline = p;
      out = got;
    } else if (auto x = decode(p, working)) {
      got = std::move(*x);
    }
    bool has_logprobs = got && got->maybe_logprobs.has_value();
    if (mode == "none") {
      if (first) {
        a2.verdict = "held";
        a2.detail = "logprobs not requested (logprobs = \"none\")";
      }
      working.logprobs = "none";
      if (!first)
        a2.detail += (a2.detail.empty() ? "" : "; ")
                     + std::string{"no switch brings logprobs: samples go without them"};
      break;
    }
    if (has_logprobs) {
      if (first) {
        a2.verdict = "held";
        a2.detail = "the response carried one logprob per token";
      } else {
        a2.detail += (a2.detail.empty() ? "" : "; ") + std::string{"logprobs = \""} + mode
                     + "\" brings them";
      }
      working.logprobs = mode;
      break;
    }
    if (first) {
      a2.verdict = "ignored";
      a2.detail = "the response carried no logprobs";
    }
  }
  if (a2.verdict == "held")
    a2.working = opts.wire.logprobs;
  else if (working.logprobs != opts.wire.logprobs)
    a2.working = working.logprobs;
  if (!baseline || !out) {
    if (d.verdict == "not_checked")
      d.detail = "no sample completed";
  } else if (working.layout == opts.wire.layout) {
    d.verdict = "held";
    d.working = working.layout;
    d.detail = std::to_string(out->tokens.size()) + " tokens, stop reason \"" + out->stop_reason
               + "\"";
  } else {
    d.verdict = "elsewhere";
    d.working = working.layout;
    d.detail = "the response carries the output in layout \"" + working.layout + "\"";
  }
  // -- A1 stop field ---------------------------------------------------------------
  auto a1 = make_check("A1", "stop field", "wire.stop-field", opts.wire.stop_field);
  if (opts.wire.stop_field == "none") {
    a1.verdict = "held";
    a1.detail = "no stop sent (stop-field = \"none\")";
    a1.working = "none";
  } else if (out) {
    // A token the model met after the first one, not met before it: with
    // temperature 0 the model repeats the baseline and must stop there.
    std::optional<size_t> at;
    for (size_t i = 1; i + 1 < out->tokens.size() && !at; ++i) {
      bool seen = false;
      for (size_t j = 0; j < i; ++j)
        seen = seen || out->tokens[j] == out->tokens[i];
      if (!seen)
        at = i;
    }
    if (!at) {
      a1.detail = "the baseline offered no stop token to test (" + std::to_string(out->tokens.size())
                  + " tokens)";
    } else {
      req.stop = stop_condition::tokens({out->tokens[*at]});
      cfg.request_logprobs = working.logprobs != "none";
      std::vector<std::string> fields{opts.wire.stop_field};
      for (auto& f : wire_options::stop_field_choices())
        if (f != opts.wire.stop_field && f != "none")
          fields.push_back(f);
      bool any_refused = false;
      for (auto& field : fields) {
        auto w = working;
        w.stop_field = field;
        auto p = session.sample(cfg, req, w);
        bool first = field == fields.front();
        if (!p.accepted || !p.error.empty()) {
          any_refused = true;
          if (first)
            refused(a1, p);
          continue;
        }
        auto got = decode(p, working);
        bool stopped = got && got->tokens.size() <= *at + 1 && got->tokens.size() < out->tokens.size();
        if (stopped) {
          if (first) {
            a1.verdict = "held";
            a1.detail = "the output ended at the stop token (" + std::to_string(got->tokens.size())
                        + " of " + std::to_string(out->tokens.size()) + " tokens)";
          } else {
            a1.detail += (a1.detail.empty() ? "" : "; ") + std::string{"stop-field = \""} + field
                         + "\" stops";
          }
          working.stop_field = field;
          a1.working = field;
          break;
        }
        if (first) {
          a1.verdict = "ignored";
          a1.detail = "the output ran past the stop token";
          if (got)
            a1.detail += " (" + std::to_string(got->tokens.size()) + " tokens, stop reason \""
                         + got->stop_reason + "\")";
        }
      }
      if (a1.working.empty()) {
        // No field stops: "none" at least keeps samples from failing.
        working.stop_field = "none";
        a1.working = "none";
        a1.detail += (a1.detail.empty() ? "" : "; ")
                     + std::string{any_refused ? "no stop field is accepted"
                                               : "no stop field stops"}
                     + ": stop-field = \"none\" (samples run to max_tokens)";
      }
      req.stop = {};
    }
  } else {
    a1.detail = "no baseline sample completed";
  }
  report.checks.push_back(a1);
  report.checks.push_back(a2);
  report.checks.push_back(d);
  // -- Tinker: TTL, archive URL, one LoRA sample (A3) ---------------------------------
  if (!opts.tinker_path.empty()) {
    auto path = *parse_tinker_path(opts.tinker_path);
    auto base = checked_tinker_base_url(opts.tinker_base_url);
    auto ttl = make_check("tinker-ttl", "checkpoint TTL call", "", "");
    auto archive = make_check("tinker-archive", "checkpoint archive URL", "", "");
    auto a3 = make_check("A3", "LoRA metadata keys", "wire.signed-url-key",
                         opts.wire.signed_url_key);
    std::optional<signed_url> url;
    if (!base) {
      ttl.verdict = "failed";
      ttl.detail = render(base.error());
    } else {
      http_request put;
      put.method = boost::beast::http::verb::put;
      put.url = tinker_url(*base, ttl_target(path));
      put.headers = tinker_headers(opts.tinker_api_key, true);
      put.body = *encode_ttl_body(opts.ttl_seconds);
      put.deadline = std::chrono::seconds(60);
      auto res = session.call(std::move(put));
      if (!res) {
        ttl.verdict = "failed";
        ttl.detail = redact_secrets(render(res.error()));
      } else if (res->status < 200 || res->status > 299) {
        probe p{false, res->status, res->body,
                message_of(tinker_error_from_status(res->status, res->body))};
        refused(ttl, p);
      } else {
        ttl.verdict = "held";
        ttl.detail = "HTTP " + std::to_string(res->status);
      }
      for (int attempt = 1; attempt <= 10; ++attempt) {
        http_request get;
        get.url = tinker_url(*base, archive_target(path));
        get.headers = tinker_headers(opts.tinker_api_key, false);
        get.deadline = std::chrono::seconds(60);
        auto got = session.call(std::move(get));
        if (!got) {
          archive.verdict = "failed";
          archive.detail = redact_secrets(render(got.error()));
          break;
        }
        if (got->status == 503 && attempt < 10) { // still building
          std::this_thread::sleep_for(std::chrono::seconds(1));
          continue;
        }
        auto decoded = decode_archive_response(got->status, got->header("Location"),
                                               got->header("Expires"), got->body,
                                               caf::make_timestamp());
        if (!decoded) {
          probe p{false, got->status, got->body, message_of(decoded.error())};
          refused(archive, p);
        } else {
          archive.verdict = "held";
          archive.detail = "signed URL " + redact_url(decoded->url);
          url = std::move(*decoded);
        }
        break;
      }
    }
    if (url) {
      auto lcfg = cfg;
      lcfg.tinker_lora_signed_url = url->url;
      lcfg.adapter_config = *normalize_adapter_config(opts.adapter_config);
      lcfg.request_logprobs = working.logprobs != "none";
      auto p = session.sample(lcfg, req, working);
      if (!p.accepted || !p.error.empty()) {
        refused(a3, p);
      } else if (auto got = decode(p, working); !got) {
        a3.verdict = "failed";
        a3.detail = message_of(got.error());
      } else {
        a3.verdict = "held";
        a3.working = opts.wire.signed_url_key;
        a3.detail = "a LoRA sample through the signed URL completed ("
                    + std::to_string(got->tokens.size())
                    + " tokens); whether the adapter applied is not visible in the response";
      }
    } else {
      a3.detail = "no signed URL to sample with";
    }
    report.checks.push_back(ttl);
    report.checks.push_back(archive);
    report.checks.push_back(a3);
  }
  report.samples_sent = session.sent;
  report.holds = true;
  for (auto& c : report.checks)
    report.holds = report.holds && c.verdict == "held";
  return report;
}

std::string doctor_report::to_text() const {
  std::string out;
  out += "worst case: " + std::to_string(max_samples) + " samples, "
         + std::to_string(max_prompt_tokens) + " prompt tokens + "
         + std::to_string(max_output_tokens) + " output tokens\n";
  if (!sent) {
    out += "nothing sent: run again with --yes to send them\n";
    return out;
  }
  out += "sent " + std::to_string(samples_sent) + " samples\n\n";
  for (auto& c : checks) {
    out += c.id + " " + c.name + ": " + c.verdict;
    if (!c.setting.empty())
      out += " (" + c.setting + " = \"" + c.checked + "\")";
    out += '\n';
    if (!c.detail.empty())
      out += "    " + c.detail + '\n';
    if (c.status != 0)
      out += "    body (HTTP " + std::to_string(c.status) + "): " + c.body + '\n';
    if (!c.setting.empty() && !c.working.empty() && c.working != c.checked)
      out += "    works: " + c.setting + " = \"" + c.working + "\"\n";
  }
  out += holds ? "\nthe configured [wire] settings hold:\n"
               : "\nthe [wire] settings that work here (paste into caf-application.ini):\n";
  out += working.to_ini();
  return out;
}

std::string doctor_report::to_json() const {
  json::object o;
  o["sent"] = sent;
  o["max_samples"] = max_samples;
  o["max_prompt_tokens"] = max_prompt_tokens;
  o["max_output_tokens"] = max_output_tokens;
  o["samples_sent"] = samples_sent;
  o["holds"] = holds;
  json::array cs;
  for (auto& c : checks) {
    json::object x;
    x["id"] = c.id;
    x["name"] = c.name;
    x["setting"] = c.setting;
    x["checked"] = c.checked;
    x["verdict"] = c.verdict;
    x["detail"] = c.detail;
    x["status"] = c.status;
    x["body"] = c.body;
    x["working"] = c.working;
    cs.push_back(std::move(x));
  }
  o["checks"] = std::move(cs);
  json::object w;
  w["stop_field"] = working.stop_field;
  w["logprobs"] = working.logprobs;
  w["include_value"] = working.include_value;
  w["layout"] = working.layout;
  w["lora_key"] = working.lora_key;
  w["signed_url_key"] = working.signed_url_key;
  w["adapter_config_key"] = working.adapter_config_key;
  w["lora_name_key"] = working.lora_name_key;
  o["working"] = std::move(w);
  o["ini"] = working.to_ini();
  return json::serialize(o);
}

} // namespace sail
