// Golden tests of the Sail wire codec (docs/wire-contract.md and the
// output rules of Sail's SailTokenCompleter): literal expected bodies for the
// create request, literal response bodies for every decoding rule and every
// malformed case. Each malformed case asserts the error kind and that the
// offending body is attached.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <boost/json.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "support/paths.hpp"

using namespace sail;
namespace json = boost::json;

namespace {

constexpr std::string_view key = "6f1c2a4e-0000-4000-8000-00000000abcd";

completer_config base_config() {
  completer_config cfg;
  cfg.model = "moonshotai/Kimi-K2.6";
  cfg.max_tokens = 256;
  cfg.temperature = 0.7;
  cfg.top_p = 1.0;
  return cfg;
}

sample_request base_request() {
  sample_request req;
  req.prompt = {151644, 872, 198};
  return req;
}

std::string body_of(const completer_config& cfg, const sample_request& req,
                    bool background = true) {
  auto enc = encode_create(cfg, req, key, background);
  if (!enc)
    FAIL("encode_create failed: " << render(enc.error()));
  return enc->body;
}

const http_header* find_header(const std::vector<http_header>& hs,
                               std::string_view name) {
  for (auto& h : hs)
    if (h.name == name)
      return &h;
  return nullptr;
}

/// Checks that `err` is an invalid_argument naming `field`.
void require_invalid(const caf::error& err, std::string_view field) {
  REQUIRE(err);
  INFO(render(err));
  REQUIRE(code_of(err) == errc::invalid_argument);
  REQUIRE(info_of(err) != nullptr);
  CHECK(info_of(err)->field == field);
}

/// Checks that decoding `body` fails with inference_error carrying `body`
/// and a message containing `what`.
template <class T>
void require_inference_error(const caf::expected<T>& res, std::string_view body,
                             std::string_view what) {
  REQUIRE_FALSE(res);
  INFO(render(res.error()));
  REQUIRE(code_of(res.error()) == errc::inference_error);
  auto* info = info_of(res.error());
  REQUIRE(info != nullptr);
  CHECK(info->body == body);
  CHECK(info->message.find(what) != std::string::npos);
}

tokens_with_logprobs require_result(std::string_view body) {
  auto res = decode_result(body);
  if (!res)
    FAIL("decode_result failed: " << render(res.error()));
  // The parsed-value overload agrees with the string one.
  auto doc = json::parse(body);
  auto res2 = decode_result(doc, body);
  REQUIRE(res2);
  CHECK(*res2 == *res);
  return *res;
}

std::string read_golden(const std::string& name) {
  std::ifstream in{std::string{test::source_dir} + "/tests/golden/sail/" + name,
                   std::ios::binary};
  REQUIRE(in);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A response with one output_text part whose members are `part_members`.
std::string with_part(std::string_view part_members,
                      std::string_view status = "completed") {
  return R"({"id":"resp_1","object":"response","status":")" + std::string{status}
         + R"(","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"x",)"
         + std::string{part_members} + "}]}]}";
}

} // namespace

// -- create body ------------------------------------------------------------------

TEST_CASE("create body: fields in the contract's fixed order (contract example)",
          "[sail_codec][create]") {
  // Every optional field set. (validate(cfg) would refuse lora together with
  // tinker_lora_signed_url; the encoder writes what it is given.)
  auto cfg = base_config();
  cfg.lora = "my-adapter";
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar";
  cfg.adapter_config = R"({"peft_type":"LORA","r":32})";
  cfg.tinker_lora_name = "step-40";
  auto req = base_request();
  req.stop = stop_condition::token(198);
  req.prompt_cache_key = "optional routing hint";
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("stop":[198],"include":["message.output_text.logprobs"],)"
           R"("prompt_cache_key":"optional routing hint",)"
           R"("metadata":{"completion_window":"priority","lora":"my-adapter",)"
           R"("tinker_lora_signed_url":"https://store.example/ckpt.tar",)"
           R"("adapter_config":"{\"peft_type\":\"LORA\",\"r\":32}",)"
           R"("tinker_lora_name":"step-40"}})");
}

TEST_CASE("create body: minimal request (no stop, no prompt_cache_key, logprobs on)",
          "[sail_codec][create]") {
  CHECK(body_of(base_config(), base_request())
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("include":["message.output_text.logprobs"],)"
           R"("metadata":{"completion_window":"priority"}})");
}

TEST_CASE("create body: include is absent when logprobs are not requested",
          "[sail_codec][create]") {
  auto cfg = base_config();
  cfg.request_logprobs = false;
  CHECK(body_of(cfg, base_request())
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("metadata":{"completion_window":"priority"}})");
}

TEST_CASE("create body: a single stop int becomes a one-element list",
          "[sail_codec][create][stop]") {
  auto cfg = base_config();
  cfg.request_logprobs = false;
  auto req = base_request();
  req.stop = stop_condition::token(151645);
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("stop":[151645],"metadata":{"completion_window":"priority"}})");
}

TEST_CASE("create body: a stop list of token ids", "[sail_codec][create][stop]") {
  auto cfg = base_config();
  cfg.request_logprobs = false;
  auto req = base_request();
  req.stop = stop_condition::tokens({198, 0, 2147483647});
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("stop":[198,0,2147483647],"metadata":{"completion_window":"priority"}})");
}

TEST_CASE("create body: a bare stop string is sent as a string, a list as a list",
          "[sail_codec][create][stop]") {
  // The seed: an int is wrapped, a list is sent as a list, anything else (a
  // bare string) passes through unchanged.
  auto cfg = base_config();
  cfg.request_logprobs = false;
  auto req = base_request();
  req.stop = stop_condition::text("</s>");
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("stop":"</s>","metadata":{"completion_window":"priority"}})");
  req.stop = stop_condition::texts({"</s>"});
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("stop":["</s>"],"metadata":{"completion_window":"priority"}})");
  req.stop = stop_condition::token(7);
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("stop":[7],"metadata":{"completion_window":"priority"}})");
}

TEST_CASE("create body: a stop list of strings, JSON-escaped",
          "[sail_codec][create][stop]") {
  auto cfg = base_config();
  auto req = base_request();
  req.stop = stop_condition::texts({"\n\n", "say \"bye\"", "a\\b", "\x01", "\xc3\xa9"});
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("stop":["\n\n","say \"bye\"","a\\b","\u0001",")"
           "\xc3\xa9"
           R"("],"include":["message.output_text.logprobs"],)"
           R"("metadata":{"completion_window":"priority"}})");
}

TEST_CASE("create body: lora adapter goes into metadata after completion_window",
          "[sail_codec][create][lora]") {
  auto cfg = base_config();
  cfg.model = "Qwen/Qwen3-8B";
  cfg.completion_window = "standard";
  cfg.lora = "my-adapter";
  cfg.request_logprobs = false;
  CHECK(body_of(cfg, base_request())
        == R"({"model":"Qwen/Qwen3-8B","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("metadata":{"completion_window":"standard","lora":"my-adapter"}})");
}

TEST_CASE("create body: tinker signed url with adapter_config as a JSON object",
          "[sail_codec][create][lora]") {
  auto cfg = base_config();
  cfg.model = "Qwen/Qwen3-8B";
  cfg.request_logprobs = false;
  cfg.tinker_lora_signed_url = "https://store.example/run/ckpt.tar?X-Sig=abc&Expires=1";
  cfg.adapter_config = R"({ "peft_type": "LORA", "r": 32, "lora_alpha": 64 })";
  CHECK(body_of(cfg, base_request())
        == R"({"model":"Qwen/Qwen3-8B","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("metadata":{"completion_window":"priority",)"
           R"("tinker_lora_signed_url":"https://store.example/run/ckpt.tar?X-Sig=abc&Expires=1",)"
           R"("adapter_config":"{\"peft_type\":\"LORA\",\"r\":32,\"lora_alpha\":64}"}})");
}

TEST_CASE("create body: adapter_config as a string holding JSON encodes like the object",
          "[sail_codec][create][lora]") {
  auto cfg = base_config();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar";
  cfg.adapter_config = R"({"peft_type":"LORA","r":32})";
  auto from_object = body_of(cfg, base_request());
  cfg.adapter_config = R"("{\"peft_type\": \"LORA\", \"r\": 32}")";
  auto from_string = body_of(cfg, base_request());
  CHECK(from_string == from_object);
  CHECK(from_object.find(R"("adapter_config":"{\"peft_type\":\"LORA\",\"r\":32}")")
        != std::string::npos);
}

TEST_CASE("create body: adapter_config that is not a JSON object is rejected",
          "[sail_codec][create][lora]") {
  auto cfg = base_config();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar";
  for (auto bad : {R"([1,2])", R"("[1,2]")", R"(not json)", R"(42)", R"("{oops")"}) {
    INFO(bad);
    cfg.adapter_config = bad;
    auto enc = encode_create(cfg, base_request(), key);
    REQUIRE_FALSE(enc);
    require_invalid(enc.error(), "adapter_config");
  }
}

TEST_CASE("create body: tinker_lora_name is the last LoRA key",
          "[sail_codec][create][lora]") {
  auto cfg = base_config();
  cfg.request_logprobs = false;
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar";
  cfg.adapter_config = R"({"r":8})";
  cfg.tinker_lora_name = "step-40";
  CHECK(body_of(cfg, base_request())
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("metadata":{"completion_window":"priority",)"
           R"("tinker_lora_signed_url":"https://store.example/ckpt.tar",)"
           R"("adapter_config":"{\"r\":8}","tinker_lora_name":"step-40"}})");
}

TEST_CASE("create body: an unresolved Tinker checkpoint never samples the base model",
          "[sail_codec][create][lora]") {
  // completer_config may carry a tinker:// checkpoint that the completer
  // resolves to tinker_lora_signed_url before encoding; unresolved -> refused.
  auto cfg = base_config();
  auto set_checkpoint = [](auto& c) {
    if constexpr (requires { c.tinker_checkpoint = std::string{}; }) {
      c.tinker_checkpoint = std::string{"tinker://run-1/sampler_weights/step-40"};
      return true;
    }
    return false;
  };
  if (!set_checkpoint(cfg))
    return; // this build's completer_config has no checkpoint source
  cfg.adapter_config = R"({"r":8})";
  auto enc = encode_create(cfg, base_request(), key);
  REQUIRE_FALSE(enc);
  require_invalid(enc.error(), "tinker_lora_signed_url");
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar";
  CHECK(encode_create(cfg, base_request(), key));
}

TEST_CASE("create body: user metadata merges after the completer's keys, in key order",
          "[sail_codec][create][metadata]") {
  auto cfg = base_config();
  cfg.request_logprobs = false;
  cfg.lora = "my-adapter";
  cfg.metadata = {{"zeta", "last"}, {"experiment", "grpo \"1\""}, {"Alpha", "1"}};
  CHECK(body_of(cfg, base_request())
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("metadata":{"completion_window":"priority","lora":"my-adapter",)"
           R"("Alpha":"1","experiment":"grpo \"1\"","zeta":"last"}})");
}

TEST_CASE("create body: prompt_cache_key only when non-empty",
          "[sail_codec][create]") {
  auto cfg = base_config();
  cfg.request_logprobs = false;
  auto req = base_request();
  CHECK(body_of(cfg, req).find("prompt_cache_key") == std::string::npos);
  req.prompt_cache_key = "group-7";
  CHECK(body_of(cfg, req)
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("prompt_cache_key":"group-7","metadata":{"completion_window":"priority"}})");
}

TEST_CASE("create body: per-call max_tokens cap is min(config, cap)",
          "[sail_codec][create]") {
  auto cfg = base_config();
  auto req = base_request();
  req.max_tokens = 64;
  CHECK(body_of(cfg, req).find(R"("max_output_tokens":64,)") != std::string::npos);
  req.max_tokens = 100000;
  CHECK(body_of(cfg, req).find(R"("max_output_tokens":256,)") != std::string::npos);
  req.max_tokens = 256;
  CHECK(body_of(cfg, req).find(R"("max_output_tokens":256,)") != std::string::npos);
}

TEST_CASE("create body: background flag", "[sail_codec][create]") {
  CHECK(body_of(base_config(), base_request(), false).find(R"("background":false,)")
        != std::string::npos);
  CHECK(body_of(base_config(), base_request(), true).find(R"("background":true,)")
        != std::string::npos);
}

TEST_CASE("create body: temperature and top_p as shortest round-trip floats",
          "[sail_codec][create]") {
  auto cfg = base_config();
  auto req = base_request();
  cfg.temperature = 0.0;
  cfg.top_p = 0.95;
  auto body = body_of(cfg, req);
  CHECK(body.find(R"("temperature":0.0,"top_p":0.95,)") != std::string::npos);
  cfg.temperature = 2.0;
  cfg.top_p = 1e-05;
  body = body_of(cfg, req);
  CHECK(body.find(R"("temperature":2.0,"top_p":1e-05,)") != std::string::npos);
  auto doc = json::parse(body);
  CHECK(doc.at("top_p").as_double() == 1e-05);
  cfg.temperature = 0.1 + 0.2; // 0.30000000000000004 must survive exactly
  doc = json::parse(body_of(cfg, req));
  CHECK(doc.at("temperature").as_double() == 0.1 + 0.2);
}

TEST_CASE("create body: non-finite temperature or top_p never reaches the wire",
          "[sail_codec][create]") {
  auto cfg = base_config();
  cfg.temperature = std::numeric_limits<double>::quiet_NaN();
  require_invalid(encode_create(cfg, base_request(), key).error(), "temperature");
  cfg = base_config();
  cfg.top_p = std::numeric_limits<double>::infinity();
  require_invalid(encode_create(cfg, base_request(), key).error(), "top_p");
}

TEST_CASE("create body: byte-identical for identical inputs (retries resend it)",
          "[sail_codec][create]") {
  auto cfg = base_config();
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar";
  cfg.adapter_config = R"({"r":32,"peft_type":"LORA"})";
  cfg.metadata = {{"b", "2"}, {"a", "1"}};
  auto req = base_request();
  req.stop = stop_condition::texts({"x", "y"});
  req.prompt_cache_key = "k";
  auto first = encode_create(cfg, req, key);
  auto copy_cfg = cfg;
  auto copy_req = req;
  auto second = encode_create(copy_cfg, copy_req, key);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->body == second->body);
  CHECK(first->headers == second->headers);
}

TEST_CASE("create body: escapes model and metadata strings and parses as JSON",
          "[sail_codec][create]") {
  auto cfg = base_config();
  cfg.model = "org/model \"quoted\"\t\\";
  cfg.metadata = {{"note", "line1\nline2\x7f"}};
  auto body = body_of(cfg, base_request());
  auto doc = json::parse(body);
  CHECK(doc.at("model").as_string() == "org/model \"quoted\"\t\\");
  CHECK(doc.at("input").as_string() == ".");
  CHECK(doc.at("metadata").at("note").as_string() == "line1\nline2\x7f");
  CHECK(doc.at("raw_prompt_tokens").as_array().size() == 3);
}

TEST_CASE("create: a prompt of 2,000,000 tokens encodes",
          "[sail_codec][create][prompt]") {
  auto req = base_request();
  req.prompt.tokens.assign(max_prompt_tokens, max_token_id);
  auto enc = encode_create(base_config(), req, key);
  REQUIRE(enc);
  auto& body = enc->body;
  auto begin = body.find(R"("raw_prompt_tokens":[)");
  REQUIRE(begin != std::string::npos);
  auto end = body.find(']', begin);
  REQUIRE(end != std::string::npos);
  // 2,000,000 x "2147483647" plus 1,999,999 commas.
  CHECK(end - (begin + 21) == max_prompt_tokens * 10 + max_prompt_tokens - 1);
}

TEST_CASE("create: Idempotency-Key must be 1..255 printable ASCII",
          "[sail_codec][create][headers]") {
  auto req = base_request();
  CHECK(encode_create(base_config(), req, std::string(255, 'k')));
  for (auto bad : {std::string{}, std::string(256, 'k'), std::string{"a\r\nb"},
                   std::string{"caf\xc3\xa9"}}) {
    auto enc = encode_create(base_config(), req, bad);
    REQUIRE_FALSE(enc);
    require_invalid(enc.error(), "idempotency_key");
  }
}

TEST_CASE("create headers: Content-Type and Idempotency-Key, never Authorization",
          "[sail_codec][create][headers]") {
  auto enc = encode_create(base_config(), base_request(), key);
  REQUIRE(enc);
  CHECK(enc->headers
        == std::vector<http_header>{{"Content-Type", "application/json"},
                                    {"Idempotency-Key", std::string{key}}});
  CHECK(find_header(enc->headers, "Authorization") == nullptr);
}

TEST_CASE("create headers: voyage headers only when a voyage is configured",
          "[sail_codec][create][headers]") {
  auto cfg = base_config();
  cfg.voyage = voyage{"voy_1", std::nullopt, std::nullopt};
  auto enc = encode_create(cfg, base_request(), key);
  REQUIRE(enc);
  CHECK(enc->headers
        == std::vector<http_header>{{"Content-Type", "application/json"},
                                    {"Idempotency-Key", std::string{key}},
                                    {"X-Sail-Voyage-Id", "voy_1"}});
  cfg.voyage = voyage{"voy_1", std::string{"span_2"}, std::string{"agent_3"}};
  enc = encode_create(cfg, base_request(), key);
  REQUIRE(enc);
  CHECK(enc->headers
        == std::vector<http_header>{{"Content-Type", "application/json"},
                                    {"Idempotency-Key", std::string{key}},
                                    {"X-Sail-Voyage-Id", "voy_1"},
                                    {"X-Sail-Voyage-Span-Id", "span_2"},
                                    {"X-Sail-Voyage-Agent-Id", "agent_3"}});
  cfg.voyage = voyage{"voy_1", std::nullopt, std::string{"agent_3"}};
  enc = encode_create(cfg, base_request(), key);
  REQUIRE(enc);
  CHECK(find_header(enc->headers, "X-Sail-Voyage-Span-Id") == nullptr);
  CHECK(find_header(enc->headers, "X-Sail-Voyage-Agent-Id")->value == "agent_3");
  CHECK(find_header(enc->headers, "Authorization") == nullptr);
  // Voyage headers never change the body.
  CHECK(enc->body == body_of(base_config(), base_request()));
}

TEST_CASE("create headers: voyage values that could inject a header are rejected",
          "[sail_codec][create][headers]") {
  auto cfg = base_config();
  cfg.voyage = voyage{"voy\r\nX-Evil: 1", std::nullopt, std::nullopt};
  require_invalid(encode_create(cfg, base_request(), key).error(), "voyage.id");
  cfg.voyage = voyage{"v", std::string{"s\n"}, std::nullopt};
  require_invalid(encode_create(cfg, base_request(), key).error(), "voyage.span_id");
  cfg.voyage = voyage{"v", std::nullopt, std::string{"a\x01"}};
  require_invalid(encode_create(cfg, base_request(), key).error(), "voyage.agent_id");
}

TEST_CASE("bearer_auth builds the Authorization header and drops unsafe bytes",
          "[sail_codec][headers]") {
  CHECK(bearer_auth("sk_test_123") == http_header{"Authorization", "Bearer sk_test_123"});
  CHECK(bearer_auth("sk_a\r\nX-Evil: 1") == http_header{"Authorization", "Bearer sk_aX-Evil:1"});
}

TEST_CASE("targets: create is /v1/responses, poll percent-encodes the id",
          "[sail_codec][targets]") {
  CHECK(create_target == "/v1/responses");
  CHECK(poll_target("resp_abc-1.2~x") == "/v1/responses/resp_abc-1.2~x");
  CHECK(poll_target("a/b?c#d e%") == "/v1/responses/a%2Fb%3Fc%23d%20e%25");
  CHECK(poll_target("\xc3\xa9") == "/v1/responses/%C3%A9");
}

// -- status classification --------------------------------------------------------

TEST_CASE("status: queued, pending, in_progress, running keep polling",
          "[sail_codec][status]") {
  for (auto s : {"queued", "pending", "in_progress", "running"}) {
    INFO(s);
    CHECK(classify_status(s) == response_phase::pending);
  }
}

TEST_CASE("status: completed, incomplete, failed, cancelled are terminal",
          "[sail_codec][status]") {
  for (auto s : {"completed", "incomplete", "failed", "cancelled"}) {
    INFO(s);
    CHECK(classify_status(s) == response_phase::terminal);
  }
}

TEST_CASE("status: anything else is unknown (poll until the deadline)",
          "[sail_codec][status]") {
  for (auto s : {"", "Completed", "canceled", "succeeded", "expired", "COMPLETED"}) {
    INFO(s);
    CHECK(classify_status(s) == response_phase::unknown);
  }
}

// -- decode_state -------------------------------------------------------------------

TEST_CASE("decode_state: id, status and phase of a response object",
          "[sail_codec][state]") {
  auto st = decode_state(R"({"id":"resp_1","object":"response","status":"queued"})");
  REQUIRE(st);
  CHECK(st->id == "resp_1");
  CHECK(st->status == "queued");
  CHECK(st->phase == response_phase::pending);
  st = decode_state(R"({"status":"completed","id":"resp_2","output":[]})");
  REQUIRE(st);
  CHECK(st->phase == response_phase::terminal);
  st = decode_state(R"({"id":"resp_3","status":"thinking_hard"})");
  REQUIRE(st);
  CHECK(st->status == "thinking_hard");
  CHECK(st->phase == response_phase::unknown);
  auto doc = json::parse(R"({"id":"resp_4","status":"running"})");
  auto st2 = decode_state(doc, "ignored");
  REQUIRE(st2);
  CHECK(st2->id == "resp_4");
  CHECK(st2->phase == response_phase::pending);
}

static std::string bad_json() {
  return R"({"id":"resp_6",)";
}

TEST_CASE("parse_response: one parse feeds decode_state and decode_result",
          "[sail_codec][state]") {
  std::string body = R"({"id":"resp_5","status":"completed","output":[]})";
  response_arena arena;
  auto doc = parse_response(body, &arena.mr);
  REQUIRE(doc);
  auto st = decode_state(*doc, body);
  REQUIRE(st);
  CHECK(st->id == "resp_5");
  CHECK(st->phase == response_phase::terminal);
  // The same verdict as the string overload, which parses itself.
  auto from_doc = decode_result(*doc, body);
  auto from_text = decode_result(body);
  CHECK(static_cast<bool>(from_doc) == static_cast<bool>(from_text));
  // A parsed_body keeps its value with its arena: it outlives the call.
  auto kept = parse_body(body);
  REQUIRE(kept);
  auto shared = std::move(*kept);
  CHECK(shared->doc.storage().get() == &shared->arena.mr); // moved, not copied
  CHECK(shared->doc.as_object().at("id").as_string() == "resp_5");
  REQUIRE_FALSE(parse_body(bad_json()));
  std::string bad = bad_json();
  auto none = parse_response(bad, &arena.mr);
  REQUIRE_FALSE(none);
  require_inference_error(none, bad, "not valid JSON");
}

TEST_CASE("decode_state: missing or invalid id/status, non-object, bad JSON -> inference_error",
          "[sail_codec][state][malformed]") {
  struct bad_case {
    std::string_view body;
    std::string_view what;
  };
  for (auto [body, what] : {
         bad_case{R"({"status":"queued"})", "no id"},
         bad_case{R"({"id":"","status":"queued"})", "no id"},
         bad_case{R"({"id":42,"status":"queued"})", "no id"},
         bad_case{R"({"id":"..","status":"queued"})", "dot segment"},
         bad_case{R"({"id":".","status":"completed"})", "dot segment"},
         bad_case{R"({"id":"resp_1"})", "no status"},
         bad_case{R"({"id":"resp_1","status":null})", "no status"},
         bad_case{R"({"id":"resp_1","status":""})", "no status"},
         bad_case{R"({"id":"resp_1","status":["completed"]})", "no status"},
         bad_case{R"(["resp_1","queued"])", "not a JSON object"},
         bad_case{R"("queued")", "not a JSON object"},
         bad_case{R"({"id":"resp_1","status":"queued")", "not valid JSON"},
         bad_case{R"()", "not valid JSON"},
         bad_case{R"(<html>502 Bad Gateway</html>)", "not valid JSON"},
       }) {
    INFO(body);
    require_inference_error(decode_state(body), body, what);
  }
}

// -- decode_result: rules -----------------------------------------------------------

TEST_CASE("decode_result: the contract's completed response", "[sail_codec][result]") {
  auto body = read_golden("completed.json");
  auto r = require_result(body);
  CHECK(r.tokens == std::vector<int32_t>{9906, 1917});
  REQUIRE(r.maybe_logprobs);
  CHECK(*r.maybe_logprobs == std::vector<double>{-0.12, -1.5});
  CHECK(r.stop_reason == "stop");
}

TEST_CASE("decode_result: logprobs as a plain array of numbers (ints too)",
          "[sail_codec][result][logprobs]") {
  auto r = require_result(with_part(R"("token_ids":[5,6,7],"logprobs":[-1,0,-0.25])"));
  CHECK(r.tokens == std::vector<int32_t>{5, 6, 7});
  REQUIRE(r.maybe_logprobs);
  CHECK(*r.maybe_logprobs == std::vector<double>{-1.0, 0.0, -0.25});
}

TEST_CASE("decode_result: logprobs as objects carrying a numeric logprob",
          "[sail_codec][result][logprobs]") {
  auto r = require_result(with_part(
    R"("token_ids":[5,6],"logprobs":[{"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[]},{"logprob":-3}])"));
  REQUIRE(r.maybe_logprobs);
  CHECK(*r.maybe_logprobs == std::vector<double>{-0.5, -3.0});
}

TEST_CASE("decode_result: absent or null logprobs -> maybe_logprobs is none",
          "[sail_codec][result][logprobs]") {
  auto r = require_result(with_part(R"("token_ids":[5,6])"));
  CHECK(r.tokens == std::vector<int32_t>{5, 6});
  CHECK_FALSE(r.maybe_logprobs);
  // The accessor yields a typed error, like the Python property.
  auto lps = r.logprobs();
  REQUIRE_FALSE(lps);
  CHECK(code_of(lps.error()) == errc::invalid_argument);
  r = require_result(with_part(R"("token_ids":[5,6],"logprobs":null)"));
  CHECK_FALSE(r.maybe_logprobs);
}

TEST_CASE("decode_result: empty token_ids with empty logprobs is a valid empty sample",
          "[sail_codec][result]") {
  auto r = require_result(with_part(R"("token_ids":[],"logprobs":[],"stop_reason":"stop")"));
  CHECK(r.tokens.empty());
  REQUIRE(r.maybe_logprobs);
  CHECK(r.maybe_logprobs->empty());
}

TEST_CASE("decode_result: token ids at the range limits", "[sail_codec][result]") {
  auto r = require_result(with_part(R"("token_ids":[0,2147483647])"));
  CHECK(r.tokens == std::vector<int32_t>{0, 2147483647});
}

TEST_CASE("decode_result: output_text is the first output_text part across output items",
          "[sail_codec][result][output]") {
  auto body = read_golden("completed_logprob_objects.json");
  auto r = require_result(body);
  CHECK(r.tokens == std::vector<int32_t>{64, 293, 272});
  REQUIRE(r.maybe_logprobs);
  CHECK(*r.maybe_logprobs == std::vector<double>{-0.5, 0.0, -2.25e-3});
  // Two output_text parts in two items: the first one wins.
  r = require_result(R"({"id":"r","status":"completed","output":[
      {"type":"message","content":[{"type":"output_text","token_ids":[1],"stop_reason":"first"}]},
      {"type":"message","content":[{"type":"output_text","token_ids":[2],"stop_reason":"second"}]}]})");
  CHECK(r.tokens == std::vector<int32_t>{1});
  CHECK(r.stop_reason == "first");
  // Items without content, non-object items and non-object parts are skipped.
  r = require_result(R"({"id":"r","status":"completed","output":[
      "junk", {"type":"reasoning"}, {"type":"message","content":"text"},
      {"type":"message","content":[7, {"type":"output_text","token_ids":[3]}]}]})");
  CHECK(r.tokens == std::vector<int32_t>{3});
}

TEST_CASE("decode_result: an output object (not array) counts as one item",
          "[sail_codec][result][output]") {
  auto r = require_result(R"({"id":"r","status":"completed","output":
      {"type":"message","content":[{"type":"output_text","token_ids":[4,5]}]}})");
  CHECK(r.tokens == std::vector<int32_t>{4, 5});
}

TEST_CASE("decode_result: stop_reason from the output_text part first",
          "[sail_codec][result][stop_reason]") {
  auto r = require_result(R"({"id":"r","status":"incomplete","stop_reason":"response-level",
      "incomplete_details":{"reason":"max_output_tokens"},
      "output":[{"type":"message","content":[{"type":"output_text","token_ids":[1],"stop_reason":"stop"}]}]})");
  CHECK(r.stop_reason == "stop");
}

TEST_CASE("decode_result: stop_reason falls back to the response's stop_reason",
          "[sail_codec][result][stop_reason]") {
  auto r = require_result(R"({"id":"r","status":"completed","stop_reason":"eos",
      "output":[{"type":"message","content":[{"type":"output_text","token_ids":[1],"stop_reason":null}]}]})");
  CHECK(r.stop_reason == "eos");
  r = require_result(R"({"id":"r","status":"completed","stop_reason":"eos",
      "output":[{"type":"message","content":[{"type":"output_text","token_ids":[1],"stop_reason":""}]}]})");
  CHECK(r.stop_reason == "eos");
}

TEST_CASE("decode_result: incomplete_details.reason max_output_tokens -> length",
          "[sail_codec][result][stop_reason]") {
  auto r = require_result(read_golden("incomplete_length.json"));
  CHECK(r.tokens == std::vector<int32_t>{1, 2, 3, 4});
  CHECK_FALSE(r.maybe_logprobs);
  CHECK(r.stop_reason == "length");
}

TEST_CASE("decode_result: stop_reason falls back to the response status",
          "[sail_codec][result][stop_reason]") {
  auto r = require_result(R"({"id":"r","status":"incomplete","incomplete_details":{"reason":"content_filter"},
      "output":[{"type":"message","content":[{"type":"output_text","token_ids":[1]}]}]})");
  CHECK(r.stop_reason == "incomplete");
  r = require_result(R"({"id":"r","status":"completed","incomplete_details":null,
      "output":[{"type":"message","content":[{"type":"output_text","token_ids":[1]}]}]})");
  CHECK(r.stop_reason == "completed");
}

TEST_CASE("decode_result: stop_reason is unknown when nothing else is there",
          "[sail_codec][result][stop_reason]") {
  auto r = require_result(R"({"id":"r",
      "output":[{"type":"message","content":[{"type":"output_text","token_ids":[1]}]}]})");
  CHECK(r.stop_reason == "unknown");
  r = require_result(R"({"id":"r","status":7,"stop_reason":{"type":"stop"},
      "output":[{"type":"message","content":[{"type":"output_text","token_ids":[1]}]}]})");
  CHECK(r.stop_reason == "unknown");
}

// -- decode_result: failed / cancelled / not finished --------------------------------

TEST_CASE("decode_result: failed -> inference_error carrying the error object",
          "[sail_codec][result][terminal]") {
  auto body = read_golden("failed.json");
  auto res = decode_result(body);
  require_inference_error(res, body, "failed");
  auto& msg = info_of(res.error())->message;
  CHECK(msg.find("resp_fail") != std::string::npos);
  CHECK(msg.find("server_error") != std::string::npos);
  CHECK(msg.find("The model crashed while sampling.") != std::string::npos);
}

TEST_CASE("decode_result: failed without an error object is still an inference_error",
          "[sail_codec][result][terminal]") {
  std::string_view body = R"({"id":"resp_f","status":"failed","error":null,"output":[]})";
  require_inference_error(decode_result(body), body, "resp_f failed");
}

TEST_CASE("decode_result: cancelled -> inference_error", "[sail_codec][result][terminal]") {
  auto body = read_golden("cancelled.json");
  require_inference_error(decode_result(body), body, "cancelled");
  // Even a cancelled response that carries output is not a result.
  auto with_output = with_part(R"("token_ids":[1])", "cancelled");
  require_inference_error(decode_result(with_output), with_output, "cancelled");
}

TEST_CASE("decode_result: a pending response is not a result",
          "[sail_codec][result][terminal]") {
  auto body = read_golden("in_progress.json");
  require_inference_error(decode_result(body), body, "not finished");
  for (auto s : {"queued", "pending", "running"}) {
    auto b = with_part(R"("token_ids":[1])", s);
    require_inference_error(decode_result(b), b, "not finished");
  }
}

// -- decode_result: malformed responses -----------------------------------------------

TEST_CASE("malformed: missing output_text -> inference_error", "[sail_codec][malformed]") {
  auto golden = read_golden("malformed_missing_output_text.json");
  require_inference_error(decode_result(golden), golden, "missing output_text");
  for (std::string_view body : {
         std::string_view{R"({"id":"r","status":"completed"})"},
         std::string_view{R"({"id":"r","status":"completed","output":[]})"},
         std::string_view{R"({"id":"r","status":"completed","output":null})"},
         std::string_view{R"({"id":"r","status":"completed","output":"hello"})"},
         std::string_view{R"({"id":"r","status":"completed","output":[{"type":"message","content":[]}]})"},
         std::string_view{R"({"id":"r","status":"completed","output":[{"type":"message","content":[{"type":"text","token_ids":[1]}]}]})"},
         std::string_view{R"({"id":"r","status":"completed","output":[{"type":"message","content":[{"type":["output_text"],"token_ids":[1]}]}]})"},
         std::string_view{R"({"id":"r","status":"completed","output":[{"type":"output_text","token_ids":[1]}]})"},
       }) {
    INFO(body);
    require_inference_error(decode_result(body), body, "missing output_text");
  }
}

TEST_CASE("malformed: token_ids missing -> inference_error", "[sail_codec][malformed]") {
  auto body = with_part(R"("logprobs":[])");
  require_inference_error(decode_result(body), body, "no token_ids");
}

TEST_CASE("malformed: token_ids not an array -> inference_error", "[sail_codec][malformed]") {
  for (auto members : {R"("token_ids":"1,2")", R"("token_ids":null)",
                       R"("token_ids":{"0":1})", R"("token_ids":7)"}) {
    auto body = with_part(members);
    INFO(body);
    require_inference_error(decode_result(body), body, "token_ids is not an array");
  }
}

TEST_CASE("malformed: token_ids holding a non-integer -> inference_error",
          "[sail_codec][malformed]") {
  auto golden = read_golden("malformed_token_float.json");
  require_inference_error(decode_result(golden), golden, "token_ids[1] is not an integer");
  for (auto members : {R"("token_ids":[1,"2"])", R"("token_ids":[1,null])",
                       R"("token_ids":[1,true])", R"("token_ids":[1,[2]])",
                       R"("token_ids":[1,2.0])", R"("token_ids":[1,2e0])",
                       R"("token_ids":[1,{"id":2}])"}) {
    auto body = with_part(members);
    INFO(body);
    require_inference_error(decode_result(body), body, "token_ids[1] is not an integer");
  }
}

TEST_CASE("malformed: token_ids negative or above 2147483647 -> inference_error",
          "[sail_codec][malformed]") {
  for (auto members : {R"("token_ids":[-1])", R"("token_ids":[2147483648])",
                       R"("token_ids":[-9223372036854775808])",
                       R"("token_ids":[18446744073709551615])"}) {
    auto body = with_part(members);
    INFO(body);
    require_inference_error(decode_result(body), body, "outside 0..2147483647");
  }
  // Beyond uint64: Boost.JSON reads it as a double, i.e. not an integer.
  auto body = with_part(R"("token_ids":[99999999999999999999999])");
  require_inference_error(decode_result(body), body, "not an integer");
}

TEST_CASE("malformed: logprob length differs from token_ids -> inference_error",
          "[sail_codec][malformed]") {
  auto golden = read_golden("malformed_logprob_mismatch.json");
  require_inference_error(decode_result(golden), golden, "2 entries for 3 tokens");
  auto longer = with_part(R"("token_ids":[1],"logprobs":[-0.1,-0.2])");
  require_inference_error(decode_result(longer), longer, "2 entries for 1 tokens");
  auto empty = with_part(R"("token_ids":[1],"logprobs":[])");
  require_inference_error(decode_result(empty), empty, "0 entries for 1 tokens");
}

TEST_CASE("malformed: logprob object without a numeric logprob -> inference_error",
          "[sail_codec][malformed]") {
  for (auto members : {R"("token_ids":[1,2],"logprobs":[-0.1,{"token":"a"}])",
                       R"("token_ids":[1,2],"logprobs":[-0.1,{"logprob":"-0.2"}])",
                       R"("token_ids":[1,2],"logprobs":[-0.1,{"logprob":null}])",
                       R"("token_ids":[1,2],"logprobs":[-0.1,"-0.2"])",
                       R"("token_ids":[1,2],"logprobs":[-0.1,null])",
                       R"("token_ids":[1,2],"logprobs":[-0.1,[-0.2]])"}) {
    auto body = with_part(members);
    INFO(body);
    require_inference_error(decode_result(body), body, "logprobs[1] is neither");
  }
}

TEST_CASE("malformed: logprobs not an array -> inference_error", "[sail_codec][malformed]") {
  for (auto members : {R"("token_ids":[1],"logprobs":-0.1)",
                       R"("token_ids":[1],"logprobs":{"content":[-0.1]})",
                       R"("token_ids":[1],"logprobs":"none")"}) {
    auto body = with_part(members);
    INFO(body);
    require_inference_error(decode_result(body), body, "logprobs is not an array");
  }
}

TEST_CASE("malformed: non-finite logprob -> inference_error", "[sail_codec][malformed]") {
  // JSON has no NaN/inf literal; an overflowing number is the only way in.
  for (auto members : {R"("token_ids":[1],"logprobs":[-1e999])",
                       R"("token_ids":[1],"logprobs":[{"logprob":1e400}])"}) {
    auto body = with_part(members);
    INFO(body);
    require_inference_error(decode_result(body), body, "logprobs[0] is not finite");
  }
  // Literal NaN / Infinity are not JSON at all.
  auto nan_body = with_part(R"("token_ids":[1],"logprobs":[NaN])");
  require_inference_error(decode_result(nan_body), nan_body, "not valid JSON");
}

TEST_CASE("malformed: bad JSON -> inference_error with the body", "[sail_codec][malformed]") {
  for (std::string_view body : {
         std::string_view{R"({"id":"r","status":"completed","output":[)"},
         std::string_view{R"({"id":"r",})"},
         std::string_view{"{\"id\":\"r\"} trailing"},
         std::string_view{""},
         std::string_view{"Internal Server Error"},
       }) {
    INFO(body);
    require_inference_error(decode_result(body), body, "not valid JSON");
  }
}

TEST_CASE("malformed: non-object JSON -> inference_error with the body",
          "[sail_codec][malformed]") {
  for (std::string_view body : {std::string_view{"[]"}, std::string_view{"null"},
                                std::string_view{"42"}, std::string_view{R"("completed")"}}) {
    INFO(body);
    require_inference_error(decode_result(body), body, "not a JSON object");
    auto doc = json::parse(body);
    require_inference_error(decode_result(doc, body), body, "not a JSON object");
  }
}

TEST_CASE("malformed: the attached body has secrets redacted", "[sail_codec][malformed]") {
  std::string body = R"({"id":"r","status":"completed","echo":"Bearer sk_live_abcdef123456","output":[]})";
  auto res = decode_result(body);
  REQUIRE_FALSE(res);
  auto* info = info_of(res.error());
  REQUIRE(info != nullptr);
  CHECK(info->body.find("sk_live_abcdef123456") == std::string::npos);
  CHECK(info->body.find("\"status\":\"completed\"") != std::string::npos);
}

TEST_CASE("malformed: a huge body is attached cut to 64 KiB", "[sail_codec][malformed]") {
  std::string body = R"({"id":"r","status":"completed","pad":")" + std::string(100000, 'x')
                     + R"(","output":[]})";
  auto res = decode_result(body);
  REQUIRE_FALSE(res);
  auto* info = info_of(res.error());
  REQUIRE(info != nullptr);
  CHECK(info->body.size() < 70000);
  CHECK(info->body.rfind(body.substr(0, 1000), 0) == 0);
  CHECK(info->body.find("[cut ") != std::string::npos);
}

// -- error bodies --------------------------------------------------------------------

TEST_CASE("error body: message, type, param and code", "[sail_codec][errors]") {
  auto eb = decode_error_body(read_golden("error_rate_limit.json"));
  REQUIRE(eb);
  CHECK(*eb == sail_error_body{"Rate limit reached for organization org_123.",
                               "rate_limit_error", "", "rate_limit_exceeded"});
  eb = decode_error_body(
    R"({"error":{"message":"Idempotency key reused with another body","type":"invalid_request_error","param":"Idempotency-Key","code":"idempotency_error"}})");
  REQUIRE(eb);
  CHECK(eb->param == "Idempotency-Key");
  CHECK(eb->code == "idempotency_error");
  // The OpenAPI allows an integer code.
  eb = decode_error_body(R"({"error":{"message":"overloaded","type":"overloaded_error","code":529}})");
  REQUIRE(eb);
  CHECK(eb->code == "529");
  CHECK(eb->param.empty());
  eb = decode_error_body(R"({"error":"plain message"})");
  REQUIRE(eb);
  CHECK(eb->message == "plain message");
}

TEST_CASE("error body: anything else is not an error body", "[sail_codec][errors]") {
  for (std::string_view body : {
         std::string_view{""}, std::string_view{"Bad Gateway"}, std::string_view{"[]"},
         std::string_view{R"({"message":"x"})"}, std::string_view{R"({"error":null})"},
         std::string_view{R"({"error":[1]})"}, std::string_view{R"({"error":{)"}}) {
    INFO(body);
    CHECK_FALSE(decode_error_body(body));
  }
}

TEST_CASE("error_from_status: http_error with status, body and the error's details",
          "[sail_codec][errors]") {
  auto body = read_golden("error_rate_limit.json");
  auto err = error_from_status(429, body);
  REQUIRE(code_of(err) == errc::http_error);
  auto* info = info_of(err);
  REQUIRE(info != nullptr);
  CHECK(info->http_status == 429);
  CHECK(info->body == body);
  CHECK(info->message
        == "HTTP 429: Rate limit reached for organization org_123. "
           "(type=rate_limit_error, code=rate_limit_exceeded)");
}

TEST_CASE("error_from_status: a body that is not an error body", "[sail_codec][errors]") {
  auto err = error_from_status(502, "<html>Bad Gateway</html>");
  REQUIRE(code_of(err) == errc::http_error);
  CHECK(info_of(err)->http_status == 502);
  CHECK(info_of(err)->message == "HTTP 502");
  CHECK(info_of(err)->body == "<html>Bad Gateway</html>");
  err = error_from_status(503, "");
  CHECK(info_of(err)->message == "HTTP 503");
  CHECK(info_of(err)->body.empty());
}

TEST_CASE("error_from_status: secrets in the body or message are redacted",
          "[sail_codec][errors]") {
  std::string body = R"({"error":{"message":"Invalid API key sk_live_abcdef123456","type":"authentication_error"}})";
  auto err = error_from_status(401, body);
  auto* info = info_of(err);
  REQUIRE(info != nullptr);
  CHECK(info->http_status == 401);
  CHECK(info->message.find("sk_live_abcdef123456") == std::string::npos);
  CHECK(info->body.find("sk_live_abcdef123456") == std::string::npos);
  CHECK(render(err).find("sk_live_abcdef123456") == std::string::npos);
}

// -- golden files ----------------------------------------------------------------------

TEST_CASE("golden files: decode_state of every response body", "[sail_codec][golden]") {
  struct expect {
    const char* file;
    const char* id;
    const char* status;
    response_phase phase;
  };
  for (auto& e : {
         expect{"completed.json", "resp_abc", "completed", response_phase::terminal},
         expect{"completed_logprob_objects.json", "resp_obj", "completed",
                response_phase::terminal},
         expect{"incomplete_length.json", "resp_len", "incomplete", response_phase::terminal},
         expect{"failed.json", "resp_fail", "failed", response_phase::terminal},
         expect{"cancelled.json", "resp_cxl", "cancelled", response_phase::terminal},
         expect{"in_progress.json", "resp_wip", "in_progress", response_phase::pending},
       }) {
    INFO(e.file);
    auto st = decode_state(read_golden(e.file));
    REQUIRE(st);
    CHECK(st->id == e.id);
    CHECK(st->status == e.status);
    CHECK(st->phase == e.phase);
  }
}

// -- completion webhooks ---------------------------------------------------

TEST_CASE("create body: a webhook goes into metadata after the LoRA keys, before user "
          "metadata",
          "[sail_codec][create][webhook]") {
  auto cfg = base_config();
  cfg.request_logprobs = false;
  cfg.lora = "my-adapter";
  cfg.metadata = {{"experiment", "x"}};
  webhook_endpoint hook{"https://hooks.example.com/node-a/sail/webhook",
                        "whk_0123456789abcdef0123"};
  auto enc = encode_create(cfg, base_request(), key, true, &hook);
  REQUIRE(enc);
  CHECK(enc->body
        == R"({"model":"moonshotai/Kimi-K2.6","input":".","raw_prompt_tokens":[151644,872,198],)"
           R"("max_output_tokens":256,"temperature":0.7,"top_p":1.0,"background":true,)"
           R"("metadata":{"completion_window":"priority","lora":"my-adapter",)"
           R"("completion_webhook":"https://hooks.example.com/node-a/sail/webhook",)"
           R"("webhook_token":"whk_0123456789abcdef0123","experiment":"x"}})");
  // Byte-identical for the same webhook; an empty endpoint means none.
  CHECK(encode_create(cfg, base_request(), key, true, &hook)->body == enc->body);
  webhook_endpoint none;
  CHECK(encode_create(cfg, base_request(), key, true, &none)->body
        == encode_create(cfg, base_request(), key)->body);
  // The user cannot set either key (Sail would call that URL instead): an
  // input rule, validate()'s (every path runs it before encoding).
  for (auto k : {"completion_webhook", "webhook_token"}) {
    auto bad = base_config();
    bad.metadata = {{k, "x"}};
    require_invalid(validate(bad), std::string{"metadata."} + k);
  }
}

TEST_CASE("create body: a pinned webhook is validated with the sample",
          "[sail_codec][create][webhook]") {
  // An input rule: validate(req), which every path runs before encoding.
  auto req = base_request();
  req.webhook = webhook_endpoint{"ftp://x/y", "whk_0123456789abcdef0123"};
  require_invalid(validate(req), "webhook.url");
  req.webhook = webhook_endpoint{"https://x/y", "whk_with space"};
  require_invalid(validate(req), "webhook.token");
  req.webhook = webhook_endpoint{"https://x/y", "whk_0123456789abcdef0123"};
  CHECK(!validate(req));
  CHECK(encode_create(base_config(), req, key));
  req.webhook = webhook_endpoint{}; // pinned "none"
  CHECK(!validate(req));
  CHECK(encode_create(base_config(), req, key));
}

TEST_CASE("decode_state: completed_at when it is a finite positive number (D5)",
          "[sail_codec][state][webhook]") {
  auto st = decode_state(R"({"id":"r","status":"completed","completed_at":1764000000.25})");
  REQUIRE(st);
  REQUIRE(st->completed_at);
  CHECK(*st->completed_at == Approx(1764000000.25));
  auto integral = decode_state(R"({"id":"r","status":"completed","completed_at":1764000000})");
  REQUIRE(integral);
  CHECK(integral->completed_at);
  for (auto body : {R"({"id":"r","status":"completed"})",
                    R"({"id":"r","status":"completed","completed_at":null})",
                    R"({"id":"r","status":"completed","completed_at":"1764000000"})",
                    R"({"id":"r","status":"completed","completed_at":-5})"}) {
    INFO(body);
    auto s = decode_state(body);
    REQUIRE(s);
    CHECK_FALSE(s->completed_at);
  }
}
