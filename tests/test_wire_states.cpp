// Response states and groups on the wire, end to end: the runtime and a
// completer against the emulator over loopback.
//
// Every state in both status vocabularies (guides: queued / in_progress,
// openapi: pending / running; terminal completed / incomplete / failed /
// cancelled, triggered by the emulator_outcome metadata key) with the typed
// outcome docs/wire-contract.md gives it:
//   completed  -> a result with the part's stop_reason
//   incomplete -> a result with stop_reason "length" (decoding rule D4:
//                 incomplete_details.reason == "max_output_tokens")
//   failed, cancelled -> inference_error carrying the response's error object
//   non-terminal words -> the worker keeps polling
// What the client saw is read from the emulator's request log (the bodies it
// actually served), not inferred from timing.
#include <catch2/catch.hpp>

#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "support/stack_fixture.hpp"
#include "support/sync_http.hpp"

using namespace sail;
using sail::test::expected_sample;
using sail::test::stack_fixture;
namespace json = boost::json;

namespace {

std::vector<int32_t> as_int32(const std::vector<int64_t>& xs) {
  return {xs.begin(), xs.end()};
}

/// The status words of the bodies the emulator served for response `id`, in
/// order: the create's answer first, then every poll.
std::vector<std::string> served_statuses(const emulator::server& emu, const std::string& key,
                                         const std::string& id) {
  std::vector<std::string> out;
  for (auto& e : emu.request_log()) {
    bool create = e.method == "POST" && e.header("Idempotency-Key") == key;
    bool poll = e.method == "GET" && e.target == "/v1/responses/" + id;
    if (!create && !poll)
      continue;
    boost::system::error_code ec;
    auto body = json::parse(e.response_body, ec);
    if (!ec && body.is_object())
      if (auto* st = body.as_object().if_contains("status"); st && st->is_string())
        out.emplace_back(st->as_string());
  }
  return out;
}

struct vocabulary_words {
  const char* queued;
  const char* running;
  const char* other_queued;
  const char* other_running;
};

vocabulary_words words_of(emulator::status_vocabulary v) {
  if (v == emulator::status_vocabulary::openapi)
    return {"pending", "running", "queued", "in_progress"};
  return {"queued", "in_progress", "pending", "running"};
}

/// Runs one sample per outcome at once, each staying queued and then in
/// progress long enough for several polls, and checks what was served and
/// what the caller got.
void check_every_state(emulator::status_vocabulary vocab) {
  auto words = words_of(vocab);
  auto eo = sail::test::test_emulator_options();
  eo.threads = 2;
  eo.vocabulary = vocab;
  // 200 ms queued, then 8 tokens x 25 ms in progress; the test runtime polls
  // every 2..20 ms (+/- jitter), so each phase sees several polls.
  eo.latency.priority.queued = std::chrono::milliseconds(200);
  eo.latency.priority.per_token = std::chrono::milliseconds(25);
  stack_fixture f{eo};
  const std::vector<std::string> outcomes{"completed", "incomplete", "failed", "cancelled"};
  std::map<std::string, std::future<token_completer::sample_result>> futures;
  for (auto& outcome : outcomes) {
    auto cfg = stack_fixture::config(8);
    cfg.metadata["emulator_outcome"] = outcome;
    sample_request req;
    req.prompt.tokens = {3, 1, 4, 1, 5};
    req.key = "state-" + outcome;
    futures.emplace(outcome, f.completer(cfg).sample(req));
  }
  std::map<std::string, caf::expected<tokens_with_logprobs>> results;
  for (auto& [outcome, fut] : futures) {
    REQUIRE(fut.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    results.emplace(outcome, fut.get());
  }
  auto st = f.emu.snapshot();
  for (auto& outcome : outcomes) {
    INFO("outcome " << outcome << ", vocabulary " << emulator::to_string(vocab));
    auto key = "state-" + outcome;
    auto id = st.timings.at(key).id;
    auto seen = served_statuses(f.emu, key, id);
    INFO("served: " << [&] {
      std::string s;
      for (auto& w : seen)
        s += w + " ";
      return s;
    }());
    REQUIRE(seen.size() >= 3);
    // The create answered the queued word; the worker kept polling through
    // both non-terminal words and stopped at the first terminal one.
    CHECK(seen.front() == words.queued);
    CHECK(std::count(seen.begin(), seen.end(), std::string{words.queued}) >= 2);
    CHECK(std::count(seen.begin(), seen.end(), std::string{words.running}) >= 1);
    CHECK(std::count(seen.begin(), seen.end(), std::string{words.other_queued}) == 0);
    CHECK(std::count(seen.begin(), seen.end(), std::string{words.other_running}) == 0);
    CHECK(seen.back() == outcome);
    CHECK(std::count(seen.begin(), seen.end(), outcome) == 1);
    CHECK(st.inference_runs.at(key) == 1);
    auto& res = results.at(outcome);
    if (outcome == "completed" || outcome == "incomplete") {
      INFO((res ? std::string{"ok"} : render(res.error())));
      REQUIRE(res);
      auto want = expected_sample(f.emu, stack_fixture::config(8), {3, 1, 4, 1, 5}, 8, key);
      CHECK(res->tokens == as_int32(want.token_ids));
      REQUIRE(res->maybe_logprobs);
      CHECK(res->maybe_logprobs->size() == want.logprobs.size());
      // Without a stop condition both run to max_output_tokens; the
      // incomplete one says so only through incomplete_details (rule D4).
      CHECK(res->stop_reason == "length");
    } else {
      REQUIRE_FALSE(res);
      CHECK(code_of(res.error()) == errc::inference_error);
      auto* info = info_of(res.error());
      REQUIRE(info != nullptr);
      // The message carries the response's error object.
      CHECK(info->message.find(outcome) != std::string::npos);
      CHECK(info->message.find(outcome == "failed" ? "\"server_error\"" : "\"cancelled\"")
            != std::string::npos);
      CHECK(info->body.find("\"status\":\"" + outcome + "\"") != std::string::npos);
    }
  }
}

} // namespace

TEST_CASE("wire states, guides vocabulary: every state with its typed outcome",
          "[wire][states]") {
  check_every_state(emulator::status_vocabulary::guides);
}

TEST_CASE("wire states, openapi vocabulary: every state with its typed outcome",
          "[wire][states]") {
  check_every_state(emulator::status_vocabulary::openapi);
}

TEST_CASE("wire states: an incomplete response keeps its partial output although a stop "
          "was asked for",
          "[wire][states]") {
  stack_fixture f;
  auto cfg = stack_fixture::config(8);
  cfg.metadata["emulator_outcome"] = "incomplete";
  // Stop on every token: a completed response would end after one token.
  std::vector<int64_t> every;
  for (int64_t t = 0; t < emulator::vocabulary_size; ++t)
    every.push_back(t);
  sample_request req;
  req.prompt.tokens = {2, 7, 1, 8};
  req.stop = stop_condition::tokens(every);
  req.key = "incomplete-with-stop";
  auto res = f.completer(cfg).sample(req).get();
  REQUIRE(res);
  CHECK(res->tokens.size() == 8);
  CHECK(res->stop_reason == "length");
  auto plain = stack_fixture::config(8);
  req.key = "completed-with-stop";
  auto stopped = f.completer(plain).sample(req).get();
  REQUIRE(stopped);
  CHECK(stopped->tokens.size() == 1);
  CHECK(stopped->stop_reason == "stop");
}

// -- groups on the wire (items 6 and 7) ----------------------------------------------------

TEST_CASE("groups on the wire: members share one prompt_cache_key, groups differ",
          "[wire][groups]") {
  stack_fixture f;
  auto tc = f.completer(stack_fixture::config(6));
  sample_request req;
  req.prompt.tokens = {4, 4, 2};
  auto g1 = tc.sample_group(req, 3).get();
  auto g2 = tc.sample_group(req, 3).get();
  REQUIRE(g1);
  REQUIRE(g2);
  auto st = f.emu.snapshot();
  REQUIRE(st.prompt_cache_keys.size() == 6);
  std::map<std::string, int> members_per_cache_key;
  for (auto& [key, pck] : st.prompt_cache_keys) {
    CHECK_FALSE(pck.empty());
    ++members_per_cache_key[pck];
  }
  REQUIRE(members_per_cache_key.size() == 2);
  for (auto& [pck, n] : members_per_cache_key)
    CHECK(n == 3);
  // The key is the group's id (the completer's choice), one per group.
  CHECK(members_per_cache_key.count(g1->group_id) == 1);
  CHECK(members_per_cache_key.count(g2->group_id) == 1);
  // The raw bodies say the same as the emulator's parsed record.
  for (auto& e : f.emu.request_log()) {
    if (e.method != "POST")
      continue;
    auto body = json::parse(e.request_body).as_object();
    CHECK(json::value_to<std::string>(body.at("prompt_cache_key"))
          == st.prompt_cache_keys.at(e.header("Idempotency-Key")));
  }
}

TEST_CASE("groups on the wire: members sample independently, a replay is identical",
          "[wire][groups]") {
  stack_fixture f;
  auto cfg = stack_fixture::config(12);
  auto tc = f.completer(cfg);
  sample_request req;
  req.prompt.tokens = {9, 8, 7, 6};
  auto g = tc.sample_group(req, 4).get();
  REQUIRE(g);
  REQUIRE(g->members.size() == 4);
  std::set<std::vector<int32_t>> distinct;
  for (auto& m : g->members) {
    REQUIRE(m.ok());
    distinct.insert(m.result->tokens);
  }
  CHECK(distinct.size() == 4);
  // Each member is the toy model's sample under its own Idempotency-Key.
  auto keys = sail::test::keys_of_prompt(f.emu, {9, 8, 7, 6});
  REQUIRE(keys.size() == 4);
  std::set<std::vector<int32_t>> predicted;
  for (auto& key : keys)
    predicted.insert(as_int32(expected_sample(f.emu, cfg, {9, 8, 7, 6}, 12, key).token_ids));
  CHECK(predicted == distinct);
  // Replaying one member's create (same key, byte-identical body) returns
  // the stored response, identical to what the last poll served, and runs
  // no inference.
  const emulator::logged_request* create = nullptr;
  auto log = f.emu.request_log();
  for (auto& e : log)
    if (e.method == "POST") {
      create = &e;
      break;
    }
  REQUIRE(create != nullptr);
  auto key = create->header("Idempotency-Key");
  auto id = f.emu.snapshot().timings.at(key).id;
  std::string last_poll_body;
  for (auto& e : log)
    if (e.method == "GET" && e.target == "/v1/responses/" + id)
      last_poll_body = e.response_body;
  REQUIRE_FALSE(last_poll_body.empty());
  sail::test::sync_http http{"127.0.0.1", f.emu.port()};
  auto replay = http.post("/v1/responses", create->request_body,
                          {{"Authorization", "Bearer " + f.emu.config().sail_api_key},
                           {"Content-Type", "application/json"},
                           {"Idempotency-Key", key}});
  REQUIRE(replay.ok());
  CHECK(replay.status() == 202);
  CHECK(replay.body() == last_poll_body);
  auto st = f.emu.snapshot();
  CHECK(st.inference_runs.at(key) == 1);
  CHECK(st.inference_runs_total == 4);
  // The same through the client: a sample re-sent under a member's key is
  // replayed, token for token.
  sample_request again;
  again.prompt.tokens = {9, 8, 7, 6};
  again.key = key;
  again.prompt_cache_key = g->group_id; // byte-identical body
  auto replayed = tc.sample(again).get();
  REQUIRE(replayed);
  bool found = false;
  for (auto& m : g->members)
    found = found || (m.result->tokens == replayed->tokens
                      && m.result->maybe_logprobs == replayed->maybe_logprobs);
  CHECK(found);
  CHECK(f.emu.snapshot().inference_runs.at(key) == 1);
}
