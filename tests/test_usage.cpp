// Usage, prices and budgets: the response's `usage` decoded (malformed or
// negative -> unknown, never a failed sample), carried on the sample result
// through the runtime against the emulator, which bills like Sail (cached
// input under one prompt_cache_key, nothing new for a replayed key); the
// prices file, the cost formula and the spending cap.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include <boost/json.hpp>

#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/sail_usage.hpp"
#include "sail_tinker/rollout/pricing.hpp"
#include "support/paths.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using sail::test::stack_fixture;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string golden(const char* name) {
  return read_file(std::string{sail::test::source_dir} + "/tests/golden/sail/" + name);
}

/// A completed response body with `usage` as given (raw JSON text).
std::string completed_with(const std::string& usage) {
  return R"({"id":"resp_1","status":"completed","output":[{"type":"message","content":[)"
         R"({"type":"output_text","text":"x","token_ids":[5,6],"stop_reason":"stop"}]}])"
         + (usage.empty() ? std::string{} : ",\"usage\":" + usage) + "}";
}

} // namespace

// -- decoding -------------------------------------------------------------------------

TEST_CASE("usage: decoded from completed and incomplete responses", "[usage][codec]") {
  auto res = decode_result(completed_with(
    R"({"input_tokens":120,"input_tokens_details":{"cached_tokens":64,"reasoning_tokens":0},)"
    R"("output_tokens":2,"output_tokens_details":{"cached_tokens":0,"reasoning_tokens":1},)"
    R"("total_tokens":122})"));
  REQUIRE(res);
  CHECK(res->usage == sample_usage{120, 64, 2, 1});
  // Sail's examples leave the details out: no cached tokens, no discount.
  auto done = decode_result(golden("completed.json"));
  REQUIRE(done);
  CHECK(done->usage == sample_usage{3, 0, 2, 0});
  // An incomplete response carries billed usage too.
  auto cut = decode_result(golden("incomplete_length.json"));
  REQUIRE(cut);
  CHECK(cut->usage == sample_usage{3, 0, 4, 0});
}

TEST_CASE("usage: absent, malformed or negative is unknown, never 0 and never an error",
          "[usage][codec]") {
  auto absent = decode_result(completed_with(""));
  REQUIRE(absent);
  CHECK(absent->usage == std::nullopt);
  CHECK(decode_usage(completed_with("")).problem.empty());
  CHECK(decode_usage(completed_with("null")).problem.empty());
  for (auto* bad : {R"("lots")", R"({"output_tokens":2})", R"({"input_tokens":-1,"output_tokens":2})",
                    R"({"input_tokens":3,"output_tokens":-2})", R"({"input_tokens":"3","output_tokens":2})",
                    R"({"input_tokens":3.5,"output_tokens":2})",
                    R"({"input_tokens":3,"output_tokens":18446744073709551615})",
                    R"({"input_tokens":3,"output_tokens":2,"input_tokens_details":[]})",
                    R"({"input_tokens":3,"output_tokens":2,"input_tokens_details":{"cached_tokens":4}})",
                    R"({"input_tokens":3,"output_tokens":2,"output_tokens_details":{"reasoning_tokens":-1}})"}) {
    INFO(bad);
    auto body = completed_with(bad);
    auto res = decode_result(body);
    REQUIRE(res); // the sample itself is fine
    CHECK(res->tokens == std::vector<int32_t>{5, 6});
    CHECK(res->usage == std::nullopt);
    auto d = decode_usage(body);
    CHECK(d.usage == std::nullopt);
    CHECK_FALSE(d.problem.empty());
  }
  CHECK(decode_usage(std::string_view{"not json"}).problem == "response is not valid JSON");
}

// -- the emulator bills like Sail, the runtime carries usage ---------------------------------

TEST_CASE("usage: a sample's usage through the runtime equals what the emulator billed",
          "[usage][runtime]") {
  stack_fixture f;
  auto tc = f.completer();
  auto res = tc.sample(model_input{5, 6, 7}).get();
  REQUIRE(res);
  REQUIRE(res->usage);
  CHECK(res->usage->input_tokens == 3);
  CHECK(res->usage->cached_tokens == 0);
  CHECK(res->usage->output_tokens == static_cast<int64_t>(res->tokens.size()));
  auto st = f.emu.snapshot();
  CHECK(st.billed_input_tokens == 3);
  CHECK(st.billed_cached_tokens == 0);
  CHECK(st.billed_output_tokens == res->tokens.size());
  // The pool counts it per (model, window).
  auto stats = f.pool_stats();
  REQUIRE(stats.usage.size() == 1);
  auto& u = stats.usage.front();
  CHECK(u.model == "emulator/toy");
  CHECK(u.window == "priority");
  CHECK(u.samples == 1);
  CHECK(u.unknown == 0);
  CHECK(u.input_tokens == 3);
  CHECK(u.output_tokens == res->tokens.size());
}

TEST_CASE("usage: a GRPO group sharing a prompt_cache_key bills cached input, a replayed "
          "key bills nothing new",
          "[usage][runtime]") {
  auto opts = sail::test::test_emulator_options();
  opts.prompt_cache_min_tokens = 4;
  stack_fixture f{opts};
  auto tc = f.completer();
  std::vector<int64_t> prompt{10, 11, 12, 13, 14, 15, 16, 17};
  sample_request req;
  req.prompt.tokens = prompt;
  auto group = tc.sample_group(req, 4).get();
  REQUIRE(group);
  REQUIRE(group->members.size() == 4);
  uint64_t in = 0;
  uint64_t cached = 0;
  uint64_t out = 0;
  int cached_members = 0;
  for (auto& m : group->members) {
    REQUIRE(m.result);
    REQUIRE(m.result->usage);
    auto& u = *m.result->usage;
    CHECK(u.input_tokens == 8);
    in += static_cast<uint64_t>(u.input_tokens);
    cached += static_cast<uint64_t>(u.cached_tokens);
    out += static_cast<uint64_t>(u.output_tokens);
    cached_members += u.cached_tokens == 8 ? 1 : 0;
  }
  // The first create of the key pays full input; the others share its prefix.
  CHECK(cached_members == 3);
  auto st = f.emu.snapshot();
  CHECK(st.billed_input_tokens == in);
  CHECK(st.billed_cached_tokens == cached);
  CHECK(st.billed_output_tokens == out);
  // A prompt shorter than the minimum prefix is not cached; one sharing a
  // long enough prefix is, up to the shared part.
  sample_request other;
  other.prompt.tokens = {10, 11, 12, 13, 14, 99};
  other.prompt_cache_key = f.emu.snapshot().prompt_cache_keys.begin()->second;
  auto partial = tc.sample(other).get();
  REQUIRE(partial);
  REQUIRE(partial->usage);
  CHECK(partial->usage->cached_tokens == 5);
  // The same key again: Sail replays, nothing new is billed.
  auto before = f.emu.snapshot();
  sample_request again = other;
  std::string replay_key;
  for (auto& e : f.emu.request_log())
    if (e.route == "POST /v1/responses"
        && e.request_body.find("\"raw_prompt_tokens\":[10,11,12,13,14,99]") != std::string::npos)
      replay_key = e.header("Idempotency-Key");
  REQUIRE(!replay_key.empty());
  again.key = replay_key;
  auto replayed = tc.sample(again).get();
  REQUIRE(replayed);
  CHECK(replayed->usage == partial->usage);
  auto after = f.emu.snapshot();
  CHECK(after.billed_input_tokens == before.billed_input_tokens);
  CHECK(after.billed_cached_tokens == before.billed_cached_tokens);
  CHECK(after.billed_output_tokens == before.billed_output_tokens);
  CHECK(after.inference_runs_total == before.inference_runs_total);
}

// -- prices and budgets ---------------------------------------------------------------

TEST_CASE("prices: the file, the cost formula and the example file", "[usage][prices]") {
  auto table = price_table::parse(
    R"({"source":"test","prices":[{"model":"m","window":"flex","input":0.4,"cached_input":0.08,)"
    R"("output":1.8},{"model":"m","window":"asap","input":1,"cached_input":0.2,"output":null}]})");
  REQUIRE(table);
  auto* p = table->find("m", "flex");
  REQUIRE(p != nullptr);
  // (input - cached) x input + cached x cached_input + output x output, per 1M.
  auto cost = cost_usd(*p, sample_usage{1'000'000, 250'000, 500'000, 0});
  REQUIRE(cost);
  CHECK(*cost == Approx(0.75 * 0.4 + 0.25 * 0.08 + 0.5 * 1.8));
  auto* asap = table->find("m", "asap");
  REQUIRE(asap != nullptr);
  CHECK(cost_usd(*asap, sample_usage{10, 0, 1, 0}) == std::nullopt); // no output price
  CHECK(cost_usd(*asap, sample_usage{10, 5, 0, 0}).has_value());
  CHECK(table->find("m", "priority") == nullptr);
  for (auto* bad : {"[]", R"({"prices":{}})", R"({"prices":[{"window":"w","input":1}]})",
                    R"({"prices":[{"model":"m","window":"w","input":-1}]})",
                    R"({"prices":[{"model":"m","window":"w","input":"1"}]})",
                    R"({"prices":[{"model":"m","window":"w","inptu":1}]})",
                    R"({"prices":[{"model":"m","window":"w"},{"model":"m","window":"w"}]})"}) {
    INFO(bad);
    auto t = price_table::parse(bad);
    REQUIRE(!t);
    CHECK(code_of(t.error()) == errc::invalid_argument);
  }
  auto missing = price_table::load("/nonexistent/prices.json");
  REQUIRE(!missing);
  CHECK(code_of(missing.error()) == errc::io_error);
  auto example = price_table::load(std::string{sail::test::source_dir}
                                   + "/examples/prices-2026-09.json");
  REQUIRE(example);
  auto* glm = example->find("GLM-5.3", "flex");
  REQUIRE(glm != nullptr);
  CHECK(glm->input == 0.40);
  CHECK(glm->cached_input == 0.08);
  CHECK(glm->output == 1.80);
}

TEST_CASE("budget: reserve the worst case, settle at usage, refuse what does not fit",
          "[usage][budget]") {
  auto table = price_table::parse(
    R"({"prices":[{"model":"m","window":"flex","input":1,"cached_input":0.5,"output":2}]})");
  REQUIRE(table);
  // $ per sample at worst: 1000 prompt tokens x $1/M + 500 x $2/M = $0.002.
  budget b{budget_limits{0.005, std::nullopt}, *table};
  CHECK(!b.check_priced("m", "flex"));
  CHECK(code_of(b.check_priced("m", "asap")) == errc::invalid_argument);
  auto h1 = b.reserve("m", "flex", 1000, 500);
  REQUIRE(h1);
  CHECK(h1->usd == Approx(0.002));
  auto h2 = b.reserve("m", "flex", 1000, 500);
  REQUIRE(h2);
  auto h3 = b.reserve("m", "flex", 1000, 500);
  REQUIRE(!h3); // 0.006 > 0.005
  CHECK(code_of(h3.error()) == errc::budget_exceeded);
  CHECK(b.exhausted());
  // In flight ones settle at their usage (500 of 1000 cached, 10 output).
  b.settle(*h1, "m", "flex", sample_usage{1000, 500, 10, 0});
  CHECK(b.spent_usd() == Approx(500 * 1e-6 + 500 * 0.5e-6 + 10 * 2e-6));
  b.settle(*h2, "m", "flex", std::nullopt); // unknown: the worst case stays spent
  CHECK(b.spent_usd() == Approx(0.00077 + 0.002));
  CHECK(b.reserved_usd() == Approx(0));
  CHECK(b.spent_usd() <= 0.005);
  // Exhausted stays exhausted: nothing new is admitted.
  CHECK(!b.reserve("m", "flex", 1, 1));
  // Token caps count input + output as reported.
  budget t{budget_limits{std::nullopt, 100}, price_table{}};
  auto a = t.reserve("any", "w", 40, 20);
  REQUIRE(a);
  t.settle(*a, "any", "w", sample_usage{40, 40, 5, 0});
  CHECK(t.spent_tokens() == 45);
  CHECK(t.reserve("any", "w", 40, 15));
  CHECK(!t.reserve("any", "w", 1, 1)); // 45 + 55 + 2 > 100
  CHECK(format_usd(0.5) == "$0.5");
  CHECK(format_usd(1.2345678) == "$1.234568");
}
