// The wire against Sail's OpenAPI document, checked by a third-party JSON
// Schema 2020-12 validator.
//
// A run through the client (the runtime and completers, as a trainer uses
// them) sends every option the client can send -- each completion window
// including balanced, a Sail LoRA, a Tinker checkpoint resolved through the
// resolver, every stop form, user metadata, a voyage, a per-call cap, a
// group, logprobs off -- against the emulator with its request log on, once
// per status vocabulary, with responses ending completed, incomplete, failed
// and cancelled. Error answers (400, 401, 404, 429) come from the same runs
// and from direct requests. Then every create body (CreateResponseRequest),
// every Idempotency-Key header (the IdempotencyKey parameter), every stop
// value (the ASSUMED stop forms) and every emulator answer (ResponseObject or
// ErrorResponse) is validated with npm `ajv` (ajv/dist/2020 + ajv-formats)
// against tests/schema, by tests/npm/validate_schema.cjs.
//
// The schema (tests/schema/sail-openapi-2026-02-18.json) is written from the
// OpenAPI document's facts. Two enums of it lag behind Sail's own 2026 pages
// (docs/wire-contract.md); tests/schema/sail-2026-extensions.json
// widens exactly those and nothing else:
//   - metadata.completion_window gains `balanced` (Sept 2026 window names);
//   - ResponseObject.status gains `queued`, `in_progress` (the guides' poll
//     loop and idempotency page) and `incomplete` (Sept 2026 guidance).
// How each document is judged: it must validate against the OpenAPI schema;
// only a document that uses one of those documented words may instead
// validate against the extension, and then every error the strict schema
// reported must sit at that one place (/metadata/completion_window or
// /status). The test also asserts the converse: a document that uses none
// of the extended words validates strictly.
//
// ajv is installed once into <build>/npm-ajv (see support/npm.hpp). A
// machine without npm/node FAILS this test; SAIL_TINKER_NO_NPM=1 opts out.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <boost/json.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "support/npm.hpp"
#include "support/paths.hpp"
#include "support/stack_fixture.hpp"
#include "support/sync_http.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::stack_fixture;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr const char* openapi = "sail-openapi-2026-02-18.json#/$defs/";
constexpr const char* extension = "sail-2026-extensions.json#/$defs/";

const std::set<std::string> openapi_statuses{"pending", "running", "failed", "completed",
                                             "cancelled"};
const std::set<std::string> openapi_windows{"asap", "priority", "standard", "flex"};

/// One document to validate, and what the test expects of it.
struct item {
  std::string name;
  std::string schema;
  std::string extension;          ///< empty: none
  std::string extension_path;     ///< where a strict error may sit
  bool needs_extension = false;   ///< uses a documented 2026 word
  json::value doc;
  /// A deliberately malformed body: the schema must refuse it too (shows
  /// that the validator judges, not just parses).
  bool expect_invalid = false;
};

/// What the runs covered (asserted at the end).
struct coverage {
  std::set<std::string> windows;
  std::set<std::string> stop_forms;
  std::set<std::string> statuses;  ///< response status words served
  std::set<int> error_statuses;
  bool lora = false;
  bool tinker = false;
  bool user_metadata = false;
  bool voyage = false;
  bool per_call_cap = false;
  bool group = false;
  bool no_logprobs = false;
};

std::string stop_form(const json::value& stop) {
  if (stop.is_string())
    return "string";
  auto& arr = stop.as_array();
  bool ints = !arr.empty() && arr[0].is_int64();
  if (ints)
    return arr.size() == 1 ? "int" : "int list";
  return arr.size() == 1 ? "string" : "string list";
}

/// Turns the emulator's request log into items (Sail routes only). With
/// `malformed_400s`, a create the emulator answered 400 was malformed on
/// purpose and must fail the schema as well.
void collect(const emulator::server& emu, const std::string& run, std::vector<item>& items,
             coverage& cov, bool malformed_400s = false) {
  std::map<std::string, int> cache_keys;
  for (auto& e : emu.request_log()) {
    bool create = e.route == "POST /v1/responses";
    bool poll = e.route == "GET /v1/responses/{id}";
    if (!create && !poll)
      continue;
    auto tag = run + " #" + std::to_string(e.seq) + " " + e.method + " " + e.target + " -> "
               + std::to_string(e.status);
    if (create) {
      auto body = json::parse(e.request_body);
      auto& o = body.as_object();
      std::string window;
      if (auto* md = o.if_contains("metadata")) {
        auto& m = md->as_object();
        if (auto* w = m.if_contains("completion_window"))
          window = json::value_to<std::string>(*w);
        cov.lora = cov.lora || m.contains("lora");
        cov.tinker = cov.tinker
                     || (m.contains("tinker_lora_signed_url") && m.contains("adapter_config")
                         && m.contains("tinker_lora_name"));
        cov.user_metadata = cov.user_metadata || m.contains("team");
      }
      if (!window.empty())
        cov.windows.insert(window);
      if (auto* stop = o.if_contains("stop")) {
        cov.stop_forms.insert(stop_form(*stop));
        items.push_back({tag + " stop", std::string{extension} + "AssumedStop", {}, {}, false,
                         *stop});
      }
      if (auto* cap = o.if_contains("max_output_tokens"); cap && *cap == 4)
        cov.per_call_cap = true;
      if (auto* pck = o.if_contains("prompt_cache_key"))
        ++cache_keys[json::value_to<std::string>(*pck)];
      cov.no_logprobs = cov.no_logprobs || !o.contains("include");
      cov.voyage = cov.voyage || !e.header("X-Sail-Voyage-Id").empty();
      items.push_back({tag + " request", std::string{openapi} + "CreateResponseRequest",
                       std::string{extension} + "CreateResponseRequest2026",
                       "/metadata/completion_window",
                       !window.empty() && openapi_windows.count(window) == 0, body,
                       malformed_400s && e.status == 400});
      auto key = e.header("Idempotency-Key");
      if (!key.empty())
        items.push_back({tag + " Idempotency-Key", std::string{openapi} + "IdempotencyKey", {},
                         {}, false, json::value(key)});
    }
    if (e.status == 0)
      continue; // a reset carries no body
    auto answer = json::parse(e.response_body);
    if (e.status == 200 || e.status == 202) {
      auto status = json::value_to<std::string>(answer.as_object().at("status"));
      cov.statuses.insert(status);
      items.push_back({tag + " response", std::string{openapi} + "ResponseObject",
                       std::string{extension} + "ResponseObject2026", "/status",
                       openapi_statuses.count(status) == 0, answer});
    } else {
      cov.error_statuses.insert(e.status);
      items.push_back({tag + " error", std::string{openapi} + "ErrorResponse", {}, {}, false,
                       answer});
    }
  }
  for (auto& [pck, n] : cache_keys)
    cov.group = cov.group || n >= 3;
}

/// Every option the client can send, through the runtime, against an
/// emulator speaking `vocab`; returns the items of its request log.
void run_client(emulator::status_vocabulary vocab, std::vector<item>& items, coverage& cov) {
  auto eo = sail::test::test_emulator_options();
  eo.threads = 2;
  eo.vocabulary = vocab;
  // Long enough in each phase for the worker's polls (2..20 ms) to see the
  // queued and the running word.
  for (auto* w : eo.latency.all()) {
    w->queued = 60ms;
    w->per_token = 10ms;
  }
  stack_fixture f{eo};
  std::vector<std::future<token_completer::sample_result>> samples;
  auto sample = [&](completer_config cfg, sample_request req) {
    samples.push_back(f.completer(std::move(cfg)).sample(std::move(req)));
  };
  auto prompt = [](std::vector<int64_t> tokens) {
    sample_request req;
    req.prompt.tokens = std::move(tokens);
    return req;
  };
  // Each window, each stop form.
  auto with_window = [](const std::string& w) {
    auto cfg = stack_fixture::config(8);
    cfg.completion_window = w;
    return cfg;
  };
  auto r = prompt({1, 2, 3});
  r.stop = stop_condition::token(5);
  sample(with_window("asap"), r);
  r = prompt({1, 2, 4});
  r.stop = stop_condition::tokens({1, 2, 3});
  sample(with_window("priority"), r);
  r = prompt({1, 2, 5});
  r.stop = stop_condition::text(" the");
  sample(with_window("balanced"), r);
  r = prompt({1, 2, 6});
  r.stop = stop_condition::texts({"\n", " cat"});
  sample(with_window("standard"), r);
  // flex: sampling fields, logprobs off, a per-call cap below the config's.
  auto flex = with_window("flex");
  flex.temperature = 0.7;
  flex.top_p = 0.9;
  flex.request_logprobs = false;
  r = prompt({1, 2, 7});
  r.max_tokens = 4;
  sample(flex, r);
  // A Sail LoRA with user metadata, a voyage and a per-call timeout.
  auto lora = with_window("priority");
  lora.lora = "emulator-lora";
  lora.metadata["team"] = "rl";
  lora.voyage = sail::voyage{"voyage-1", std::string{"span-2"}, std::string{"agent-3"}};
  lora.timeout = caf::timespan{30s};
  sample(lora, prompt({2, 2, 2}));
  // A Tinker checkpoint, resolved (TTL set, signed URL) by the resolver.
  auto tinker = with_window("balanced");
  tinker.tinker_checkpoint = "tinker://run-1/sampler_weights/step-40";
  tinker.tinker_ttl_seconds = 3600;
  tinker.adapter_config = R"({"peft_type":"LORA","r":32})";
  tinker.tinker_lora_name = "step-40";
  sample(tinker, prompt({3, 3, 3}));
  // Every outcome.
  for (auto outcome : {"incomplete", "failed", "cancelled"}) {
    auto cfg = with_window("priority");
    cfg.metadata["emulator_outcome"] = outcome;
    sample(cfg, prompt({4, 4, 4}));
  }
  // A group.
  auto group = f.completer(with_window("priority")).sample_group(prompt({5, 5, 5}), 3);
  // An error the server judges: an unknown LoRA (404).
  auto unknown_lora = with_window("priority");
  unknown_lora.lora = "no-such-lora";
  sample(unknown_lora, prompt({6}));
  for (auto& s : samples)
    REQUIRE(s.wait_for(60s) == std::future_status::ready);
  REQUIRE(group.wait_for(60s) == std::future_status::ready);
  REQUIRE(group.get());
  // A 429 (with Retry-After) on the next create; the client retries it.
  emulator::fault_settings faults;
  faults.routes = emulator::route_create;
  faults.scripted = {emulator::fault_kind::status_429};
  f.emu.set_faults(faults);
  REQUIRE(f.completer(with_window("standard")).sample(prompt({8, 8})).get());
  collect(f.emu, emulator::to_string(vocab), items, cov);
}

/// Error answers the client never provokes by itself: 401 on both routes,
/// 404 for an unknown response, 400 for a malformed create.
void direct_errors(std::vector<item>& items, coverage& cov) {
  emulator::server emu{sail::test::test_emulator_options()};
  sail::test::sync_http http{"127.0.0.1", emu.port()};
  sail::test::header_list auth{{"Authorization", "Bearer " + emu.config().sail_api_key},
                               {"Content-Type", "application/json"}};
  http.post("/v1/responses", R"({"model":"m","input":"."})",
            {{"Authorization", "Bearer sk_wrong"}});
  http.get("/v1/responses/resp_x", {{"Authorization", "Bearer sk_wrong"}});
  http.get("/v1/responses/resp_unknown", auth);
  http.post("/v1/responses", R"({"model":"m","input":".","user":")" + std::string(257, 'u')
                               + R"("})",
            auth);
  http.post("/v1/responses", R"({"input":"."})", auth);
  collect(emu, "direct", items, cov, true);
}

} // namespace

TEST_CASE("OpenAPI contract: every create body and every emulator answer validate with ajv",
          "[wire][openapi]") {
  if (sail::test::npm_opted_out()) {
    WARN("SAIL_TINKER_NO_NPM is set: the OpenAPI contract test did not run");
    return;
  }
  if (!sail::test::have_npm())
    FAIL(sail::test::npm_missing_message("the OpenAPI contract test (ajv)"));
  std::string log;
  auto dir = sail::test::npm_install_cached("npm-ajv", {"ajv@^8", "ajv-formats@^3"}, log);
  if (dir.empty())
    FAIL(sail::redact_secrets(log));

  std::vector<item> items;
  coverage cov;
  std::map<std::string, std::set<std::string>> statuses_by_run;
  for (auto vocab : {emulator::status_vocabulary::guides, emulator::status_vocabulary::openapi}) {
    coverage run_cov;
    run_client(vocab, items, run_cov);
    statuses_by_run[emulator::to_string(vocab)] = run_cov.statuses;
    cov.windows.insert(run_cov.windows.begin(), run_cov.windows.end());
    cov.stop_forms.insert(run_cov.stop_forms.begin(), run_cov.stop_forms.end());
    cov.statuses.insert(run_cov.statuses.begin(), run_cov.statuses.end());
    cov.error_statuses.insert(run_cov.error_statuses.begin(), run_cov.error_statuses.end());
    cov.lora |= run_cov.lora;
    cov.tinker |= run_cov.tinker;
    cov.user_metadata |= run_cov.user_metadata;
    cov.voyage |= run_cov.voyage;
    cov.per_call_cap |= run_cov.per_call_cap;
    cov.group |= run_cov.group;
    cov.no_logprobs |= run_cov.no_logprobs;
  }
  direct_errors(items, cov);

  // What the runs must have covered.
  for (auto w : {"asap", "priority", "balanced", "standard", "flex"})
    CHECK(cov.windows.count(w) == 1);
  for (auto form : {"int", "int list", "string", "string list"})
    CHECK(cov.stop_forms.count(form) == 1);
  CHECK(cov.lora);
  CHECK(cov.tinker);
  CHECK(cov.user_metadata);
  CHECK(cov.voyage);
  CHECK(cov.per_call_cap);
  CHECK(cov.group);
  CHECK(cov.no_logprobs);
  for (auto s : {"queued", "in_progress", "completed", "incomplete", "failed", "cancelled"})
    CHECK(statuses_by_run["guides"].count(s) == 1);
  for (auto s : {"pending", "running", "completed", "incomplete", "failed", "cancelled"})
    CHECK(statuses_by_run["openapi"].count(s) == 1);
  for (int code : {400, 401, 404, 429})
    CHECK(cov.error_statuses.count(code) == 1);

  // Validate.
  json::array input;
  for (auto& it : items)
    input.push_back(json::object{
      {"name", it.name},
      {"schema", it.schema},
      {"extension", it.extension.empty() ? json::value(nullptr) : json::value(it.extension)},
      {"doc", it.doc}});
  auto items_file = fs::path{sail::test::binary_dir}
                    / ("openapi-contract-items-" + std::to_string(::getpid()) + ".json");
  auto err_file = fs::path{sail::test::binary_dir}
                  / ("openapi-contract-stderr-" + std::to_string(::getpid()) + ".log");
  {
    std::ofstream out{items_file};
    out << json::serialize(input);
  }
  auto script = fs::path{sail::test::source_dir} / "tests" / "npm" / "validate_schema.cjs";
  auto schema_dir = fs::path{sail::test::source_dir} / "tests" / "schema";
  using sail::test::shell_quote;
  auto cmd = "AJV_PKG_DIR=" + shell_quote(dir.string()) + " SCHEMA_DIR="
             + shell_quote(schema_dir.string()) + " ITEMS_FILE="
             + shell_quote(items_file.string()) + " timeout 120 node "
             + shell_quote(script.string()) + " 2> " + shell_quote(err_file.string());
  auto [code, out] = sail::test::run_shell(cmd);
  auto err = sail::test::slurp_file(err_file);
  std::error_code ignored;
  fs::remove(items_file, ignored);
  fs::remove(err_file, ignored);
  INFO("node stderr: " << sail::redact_secrets(sail::test::tail_of(err)));
  REQUIRE(code == 0);
  auto results = json::parse(out).as_array();
  REQUIRE(results.size() == items.size());
  size_t strict = 0, extended = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    auto& r = results[i].as_object();
    std::string errors;
    for (auto& e : r.at("strict_errors").as_array())
      errors += json::serialize(e) + " ";
    INFO(it.name << " (" << it.schema << "): strict errors " << errors);
    if (it.expect_invalid) {
      CHECK_FALSE(r.at("strict_ok").as_bool());
      continue;
    }
    if (!it.needs_extension) {
      // Nothing beyond the OpenAPI document: it must validate strictly.
      CHECK(r.at("strict_ok").as_bool());
      if (r.at("strict_ok").as_bool())
        ++strict;
      continue;
    }
    // A documented 2026 word: the strict schema refuses exactly that word,
    // the extension accepts the whole document.
    CHECK_FALSE(r.at("strict_ok").as_bool());
    for (auto& e : r.at("strict_errors").as_array())
      CHECK(json::value_to<std::string>(e.as_object().at("path")) == it.extension_path);
    std::string ext_errors;
    for (auto& e : r.at("extension_errors").as_array())
      ext_errors += json::serialize(e) + " ";
    INFO("extension errors " << ext_errors);
    CHECK(r.at("extension_ok") == true);
    ++extended;
  }
  INFO("validated " << items.size() << " documents: " << strict << " strictly, " << extended
                    << " with the documented 2026 extension");
  CHECK(strict > 0);
  CHECK(extended > 0);
}
