// SailTokenCompleter's configuration rules and the sample-input rules, one named
// test per rule. Every failure is invalid_argument naming the field.
#include <catch2/catch.hpp>

#include <limits>

#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/url.hpp"

using namespace sail;

namespace {

completer_config base_config() {
  completer_config cfg;
  cfg.model = "some/unknown-model";
  cfg.max_tokens = 128;
  return cfg;
}

// Asserts err is invalid_argument naming `field`.
void require_invalid(const caf::error& err, const std::string& field) {
  INFO("error: " << render(err));
  REQUIRE(err);
  CHECK(code_of(err) == errc::invalid_argument);
  REQUIRE(info_of(err) != nullptr);
  CHECK(info_of(err)->field == field);
}

sample_request request_with(std::vector<int64_t> prompt) {
  sample_request req;
  req.prompt.tokens = std::move(prompt);
  return req;
}

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

} // namespace

TEST_CASE("config: defaults match SailTokenCompleter's", "[validation][config]") {
  completer_config cfg;
  CHECK(cfg.temperature == 1.0);
  CHECK(cfg.top_p == 1.0);
  CHECK(cfg.completion_window == "priority");
  CHECK(cfg.request_logprobs);
  CHECK(!cfg.lora);
  CHECK(!cfg.tinker_lora_signed_url);
  CHECK(!cfg.adapter_config);
  CHECK(!cfg.tinker_lora_name);
  CHECK(cfg.metadata.empty());
  CHECK(!cfg.timeout);
  CHECK(!cfg.voyage);
  CHECK(!validate(base_config()));
}

TEST_CASE("config: empty model is invalid_argument", "[validation][config]") {
  auto cfg = base_config();
  cfg.model.clear();
  require_invalid(validate(cfg), "model");
}

TEST_CASE("config: max_tokens must be > 0", "[validation][config]") {
  auto cfg = base_config();
  cfg.max_tokens = 0;
  require_invalid(validate(cfg), "max_tokens");
  cfg.max_tokens = -5;
  require_invalid(validate(cfg), "max_tokens");
  cfg.max_tokens = 1;
  CHECK(!validate(cfg));
}

TEST_CASE("config: temperature outside 0..2 is rejected", "[validation][config]") {
  auto cfg = base_config();
  for (double ok : {0.0, 0.7, 2.0}) {
    cfg.temperature = ok;
    CHECK(!validate(cfg));
  }
  for (double bad : {-0.01, 2.01, 100.0}) {
    cfg.temperature = bad;
    require_invalid(validate(cfg), "temperature");
  }
}

TEST_CASE("config: top_p outside 0..1 is rejected", "[validation][config]") {
  auto cfg = base_config();
  for (double ok : {0.0, 0.5, 1.0}) {
    cfg.top_p = ok;
    CHECK(!validate(cfg));
  }
  for (double bad : {-0.1, 1.0001}) {
    cfg.top_p = bad;
    require_invalid(validate(cfg), "top_p");
  }
}

TEST_CASE("config: non-finite temperature or top_p is rejected", "[validation][config]") {
  auto cfg = base_config();
  for (double bad : {not_a_number, inf, -inf}) {
    cfg.temperature = bad;
    require_invalid(validate(cfg), "temperature");
  }
  cfg.temperature = 1.0;
  for (double bad : {not_a_number, inf, -inf}) {
    cfg.top_p = bad;
    require_invalid(validate(cfg), "top_p");
  }
}

TEST_CASE("config: any LoRA source with the asap window is rejected",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.completion_window = "asap";
  CHECK(!validate(cfg));
  cfg.lora = "my-adapter";
  require_invalid(validate(cfg), "completion_window");
  cfg.lora.reset();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar?sig=x";
  cfg.adapter_config = R"({"r":32})";
  require_invalid(validate(cfg), "completion_window");
}

TEST_CASE("config: lora and tinker_lora_signed_url are mutually exclusive",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.lora = "my-adapter";
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar?sig=x";
  cfg.adapter_config = R"({"r":32})";
  require_invalid(validate(cfg), "lora");
}

TEST_CASE("config: tinker_lora_signed_url requires adapter_config",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar?sig=x";
  require_invalid(validate(cfg), "adapter_config");
  cfg.adapter_config = R"({"peft_type":"LORA","r":32})";
  CHECK(!validate(cfg));
}

TEST_CASE("config: tinker_lora_signed_url must be an http(s) URL",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.adapter_config = R"({"r":32})";
  for (auto bad : {"", "not a url", "ftp://host/x", "tinker://run/weights/x"}) {
    cfg.tinker_lora_signed_url = bad;
    require_invalid(validate(cfg), "tinker_lora_signed_url");
  }
}

TEST_CASE("url: one rule for every http(s) URL the tree accepts", "[validation][url]") {
  for (auto good : {"http://h", "https://store.example/ckpt.tar?sig=x", "HTTPS://Host:8443/p",
                    "http://127.0.0.1:9/x", "http://[::1]/hook", "http://u:p@h/x"}) {
    INFO(good);
    CHECK(is_http_url(good));
  }
  for (auto bad : {"", "not a url", "ftp://host/x", "tinker://run/weights/x", "http://",
                   "http:///path", "https:/host/x", "http:host", "http://h:0/x",
                   "http://u@h@x/p", "/relative/path", "http://h x/"}) {
    INFO(bad);
    CHECK_FALSE(is_http_url(bad));
  }
}

TEST_CASE("url: a signed LoRA URL and a pinned webhook URL follow the same rule",
          "[validation][url]") {
  auto cfg = base_config();
  cfg.adapter_config = R"({"r":32})";
  sample_request req;
  req.prompt = {1, 2, 3};
  for (auto url : {"https://h/x", "http://h:0/x", "http:///x", "https://u@h@x/p", "mailto:x@h"}) {
    INFO(url);
    cfg.tinker_lora_signed_url = url;
    req.webhook = webhook_endpoint{url, "whk_0123456789abcdef"};
    CHECK(!validate(cfg) == is_http_url(url));
    CHECK(!validate(req) == is_http_url(url));
  }
}

TEST_CASE("config: an error about the signed URL never shows its query string",
          "[validation][config][secrets]") {
  auto cfg = base_config();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar?X-Amz-Signature=s3cr3t";
  auto err = validate(cfg);
  REQUIRE(err);
  CHECK(render(err).find("s3cr3t") == std::string::npos);
}

TEST_CASE("config: adapter_config string that is not a JSON object is rejected",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar?sig=x";
  for (auto bad : {"", "not json", "[1,2]", "42", "\"text\"", "{\"r\":"}) {
    cfg.adapter_config = bad;
    require_invalid(validate(cfg), "adapter_config");
  }
}

TEST_CASE("config: adapter_config accepts an object or a string holding JSON",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar?sig=x";
  cfg.adapter_config = R"({"r":32})";
  CHECK(!validate(cfg));
  cfg.adapter_config = R"("{\"r\":32}")";
  CHECK(!validate(cfg));
  CHECK(*normalize_adapter_config(R"({"r": 32, "peft_type": "LORA"})")
        == R"({"r":32,"peft_type":"LORA"})");
  CHECK(*normalize_adapter_config(R"("{\"r\": 32}")") == R"({"r":32})");
  auto bad = normalize_adapter_config(R"("[1]")");
  REQUIRE(!bad);
  require_invalid(bad.error(), "adapter_config");
  auto worse = normalize_adapter_config("{");
  REQUIRE(!worse);
  require_invalid(worse.error(), "adapter_config");
}

TEST_CASE("config: empty lora name is rejected", "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.lora = "";
  require_invalid(validate(cfg), "lora");
}

TEST_CASE("config: user metadata must not collide with keys the completer sets",
          "[validation][config][metadata]") {
  for (auto& key : reserved_metadata_keys()) {
    auto cfg = base_config();
    cfg.metadata[key] = "x";
    require_invalid(validate(cfg), "metadata." + key);
  }
  auto cfg = base_config();
  cfg.metadata = {{"experiment", "a"}};
  CHECK(!validate(cfg));
  // The webhook keys are the completer's (its receiver, or the
  // endpoint pinned in sample_request::webhook); user metadata cannot set them.
  for (auto key : {"completion_webhook", "webhook_token"}) {
    cfg.metadata = {{"experiment", "a"}, {key, "https://hook.example/x"}};
    require_invalid(validate(cfg), std::string{"metadata."} + key);
  }
  cfg.metadata = {{"", "empty key"}};
  require_invalid(validate(cfg), "metadata");
}

TEST_CASE("config: timeout must be positive", "[validation][config]") {
  auto cfg = base_config();
  cfg.timeout = caf::timespan{0};
  require_invalid(validate(cfg), "timeout");
  cfg.timeout = std::chrono::seconds(-1);
  require_invalid(validate(cfg), "timeout");
  cfg.timeout = std::chrono::seconds(30);
  CHECK(!validate(cfg));
}

TEST_CASE("config: voyage needs a printable id", "[validation][config]") {
  auto cfg = base_config();
  cfg.voyage = voyage{"", std::nullopt, std::nullopt};
  require_invalid(validate(cfg), "voyage.id");
  cfg.voyage = voyage{"v-1", std::string{"bad\nspan"}, std::nullopt};
  require_invalid(validate(cfg), "voyage.span_id");
  cfg.voyage = voyage{"v-1", std::string{"span"}, std::string{"agent\r"}};
  require_invalid(validate(cfg), "voyage.agent_id");
  cfg.voyage = voyage{"v-1", std::string{"span"}, std::string{"agent"}};
  CHECK(!validate(cfg));
}

TEST_CASE("config: a known model only allows its windows", "[validation][config][models]") {
  model_table table;
  table.set("m/small", {{"priority", "flex"}, true});
  auto cfg = base_config();
  cfg.model = "m/small";
  cfg.completion_window = "priority";
  CHECK(!validate(cfg, table));
  cfg.completion_window = "standard";
  require_invalid(validate(cfg, table), "completion_window");
}

TEST_CASE("config: an unknown model may use any window", "[validation][config][models]") {
  model_table table;
  table.set("m/small", {{"priority"}, true});
  auto cfg = base_config();
  cfg.model = "m/other";
  for (auto w : {"asap", "priority", "standard", "flex", "balanced", "15m"}) {
    cfg.completion_window = w;
    CHECK(!validate(cfg, table));
  }
}

TEST_CASE("config: LoRA needs a LoRA-capable model", "[validation][config][models]") {
  model_table table;
  table.set("m/base", {{"priority"}, false});
  table.set("m/lora", {{"priority"}, true});
  auto cfg = base_config();
  cfg.model = "m/base";
  cfg.lora = "adapter";
  require_invalid(validate(cfg, table), "lora");
  cfg.lora.reset();
  cfg.tinker_lora_signed_url = "https://store.example/x.tar?sig=1";
  cfg.adapter_config = "{}";
  require_invalid(validate(cfg, table), "tinker_lora_signed_url");
  cfg.model = "m/lora";
  CHECK(!validate(cfg, table));
}

TEST_CASE("config: the built-in model table holds only what Sail documents",
          "[validation][config][models][facts]") {
  auto& table = model_table::builtin();
  // FACT (/loras): Kimi-K2.6 serves LoRAs. Window support is published on
  // /pricing and changes, so no window list is built in.
  REQUIRE(table.models().size() == 1);
  auto* kimi = table.find("moonshotai/Kimi-K2.6");
  REQUIRE(kimi != nullptr);
  CHECK(kimi->lora_capable);
  CHECK(kimi->windows.empty());
  CHECK(table.find("no/such-model") == nullptr);
  auto cfg = base_config();
  cfg.model = "moonshotai/Kimi-K2.6";
  cfg.lora = "my-lora";
  for (auto w : {"priority", "balanced", "standard", "flex", "15m"}) {
    cfg.completion_window = w;
    CHECK(!validate(cfg));
  }
  cfg.completion_window = "asap";
  auto err = validate(cfg);
  require_invalid(err, "completion_window");
  CHECK(render(err).find(std::string{lora_asap_message}) != std::string::npos);
  // Any other model is unknown: LoRA and any window pass, the server judges.
  cfg.model = "Qwen/Qwen3-8B";
  cfg.completion_window = "balanced";
  CHECK(!validate(cfg));
}

TEST_CASE("config: the model table loads from JSON configuration",
          "[validation][config][models]") {
  auto table = model_table::from_json(R"({"models": {
      "m/a": {"windows": ["asap", "balanced"], "lora": true},
      "m/b": {"windows": ["flex"]}}})");
  REQUIRE(table);
  REQUIRE(table->find("m/a") != nullptr);
  CHECK(table->find("m/a")->lora_capable);
  CHECK(table->find("m/a")->windows == std::vector<std::string>{"asap", "balanced"});
  CHECK(!table->find("m/b")->lora_capable);
  require_invalid(model_table::from_json("{").error(), "models");
  require_invalid(model_table::from_json(R"({"x": 1})").error(), "models");
  require_invalid(model_table::from_json(R"({"models": {"m": 1}})").error(), "models.m");
  // "windows" omitted: any window; "lora" omitted: not LoRA-capable.
  auto open = model_table::from_json(R"({"models": {"m": {}}})");
  REQUIRE(open);
  CHECK(open->find("m")->windows.empty());
  CHECK(!open->find("m")->lora_capable);
  require_invalid(model_table::from_json(R"({"models": {"m": {"windows": [1]}}})").error(),
                  "models.m.windows");
  require_invalid(
    model_table::from_json(R"({"models": {"m": {"windows": [], "lora": "yes"}}})").error(),
    "models.m.lora");
  require_invalid(
    model_table::from_json(R"({"models": {"m": {"windows": [], "lorra": true}}})").error(),
    "models.m.lorra");
}

// -- sample input ---------------------------------------------------------------------

TEST_CASE("sample: empty prompt is invalid_argument", "[validation][sample]") {
  require_invalid(validate(request_with({})), "prompt");
}

TEST_CASE("sample: tokens outside 0..2147483647 are rejected", "[validation][sample]") {
  CHECK(!validate(request_with({0, 1, 2147483647})));
  require_invalid(validate(request_with({1, -1})), "prompt");
  require_invalid(validate(request_with({2147483648LL})), "prompt");
  require_invalid(validate(request_with({std::numeric_limits<int64_t>::min()})), "prompt");
}

TEST_CASE("sample: at most 2,000,000 prompt tokens", "[validation][sample]") {
  std::vector<int64_t> big(max_prompt_tokens, 7);
  CHECK(!validate(request_with(big)));
  big.push_back(7);
  require_invalid(validate(request_with(std::move(big))), "prompt");
}

TEST_CASE("sample: a bare stop string holds exactly one string", "[validation][sample][stop]") {
  auto req = request_with({1});
  req.stop.strings = {"a", "b"};
  req.stop.bare_string = true;
  require_invalid(validate(req), "stop");
}

TEST_CASE("sample: stop accepts none, ids, strings", "[validation][sample][stop]") {
  auto req = request_with({1});
  for (auto stop : {stop_condition::none(), stop_condition::token(198),
                    stop_condition::tokens({1, 2}), stop_condition::text("\n"),
                    stop_condition::texts({"a", "b"})}) {
    req.stop = stop;
    CHECK(!validate(req));
  }
}

TEST_CASE("sample: stop never mixes ints and strings", "[validation][sample][stop]") {
  auto req = request_with({1});
  req.stop.token_ids = {1};
  req.stop.strings = {"x"};
  require_invalid(validate(req), "stop");
}

TEST_CASE("sample: stop token ids must be in range and strings non-empty",
          "[validation][sample][stop]") {
  auto req = request_with({1});
  req.stop = stop_condition::token(-3);
  require_invalid(validate(req), "stop");
  req.stop = stop_condition::token(2147483648LL);
  require_invalid(validate(req), "stop");
  req.stop = stop_condition::texts({"ok", ""});
  require_invalid(validate(req), "stop");
}

TEST_CASE("sample: per-call max_tokens cap must be positive and caps the config",
          "[validation][sample]") {
  auto cfg = base_config();
  cfg.max_tokens = 100;
  auto req = request_with({1});
  CHECK(effective_max_tokens(cfg, req) == 100);
  req.max_tokens = 40;
  CHECK(!validate(req));
  CHECK(effective_max_tokens(cfg, req) == 40);
  req.max_tokens = 400;
  CHECK(effective_max_tokens(cfg, req) == 100);
  req.max_tokens = 0;
  require_invalid(validate(req), "max_tokens");
}

TEST_CASE("sample: idempotency key at most 255 printable characters",
          "[validation][sample]") {
  auto req = request_with({1});
  req.key = std::string(255, 'k');
  CHECK(!validate(req));
  req.key = std::string(256, 'k');
  require_invalid(validate(req), "key");
  req.key = "bad\nkey";
  require_invalid(validate(req), "key");
}

TEST_CASE("config: tinker_checkpoint excludes other LoRA sources and needs adapter_config",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.tinker_checkpoint = "tinker://run:train:0/weights/w1";
  require_invalid(validate(cfg), "adapter_config");
  cfg.adapter_config = "{}";
  CHECK(!validate(cfg));
  cfg.lora = "x";
  require_invalid(validate(cfg), "tinker_checkpoint");
  cfg.lora.reset();
  cfg.tinker_checkpoint = "https://not-a-tinker-path";
  require_invalid(validate(cfg), "tinker_checkpoint");
  cfg.tinker_checkpoint = "tinker://run:train:0/weights/w1";
  cfg.completion_window = "asap";
  require_invalid(validate(cfg), "completion_window");
}

TEST_CASE("config: tinker_ttl_seconds needs a checkpoint and must be positive",
          "[validation][config][lora]") {
  auto cfg = base_config();
  cfg.tinker_ttl_seconds = 60;
  require_invalid(validate(cfg), "tinker_ttl_seconds");
  cfg.tinker_checkpoint = "tinker://run:train:0/weights/w1";
  cfg.adapter_config = "{}";
  CHECK(!validate(cfg));
  cfg.tinker_ttl_seconds = 0;
  require_invalid(validate(cfg), "tinker_ttl_seconds");
}
