// The Sail + Tinker emulator over real loopback sockets, driven by a minimal
// synchronous Beast client (tests/support/sync_http).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <future>
#include <set>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/json.hpp>

#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/net/http_server.hpp"
#include "support/sync_http.hpp"

namespace json = boost::json;
namespace http = boost::beast::http;
namespace emu = sail::emulator;
using emu::fault_kind;
using sail::test::header_list;
using sail::test::sync_http;
using sail::test::sync_result;

namespace {

constexpr const char* create_route = "POST /v1/responses";
constexpr const char* poll_route = "GET /v1/responses/{id}";

struct fixture {
  explicit fixture(emu::options opts = {})
    : server(std::move(opts)), client("127.0.0.1", server.port()) {
    // nop
  }

  header_list auth(header_list extra = {}) const {
    extra.emplace_back("Authorization",
                       "Bearer " + server.config().sail_api_key);
    return extra;
  }

  sync_result create(const json::object& body, header_list extra = {}) {
    return client.post("/v1/responses", json::serialize(body),
                       auth(std::move(extra)));
  }

  sync_result create_keyed(const json::object& body, const std::string& key) {
    return create(body, {{"Idempotency-Key", key}});
  }

  sync_result poll(const std::string& id) {
    return client.get("/v1/responses/" + id, auth());
  }

  // Polls until completed (bounded by attempts, no sleeping).
  json::object poll_until_completed(const std::string& id,
                                    std::vector<std::string>* seen = nullptr) {
    for (int i = 0; i < 1'000'000; ++i) {
      auto r = poll(id);
      REQUIRE(r.ok());
      REQUIRE(r.status() == 200);
      auto o = r.json().as_object();
      std::string status{o.at("status").as_string()};
      if (seen && (seen->empty() || seen->back() != status))
        seen->push_back(status);
      if (status == "completed")
        return o;
      // Like a Sail client: the next GET is the next look (each is a round
      // trip to the server; the status changes with the emulator's clock).
    }
    FAIL("response " << id << " never completed");
    return {};
  }

  header_list tinker_auth() const {
    return {{"X-API-Key", server.config().tinker_api_key}};
  }

  emu::server server;
  sync_http client;
};

json::object basic_body() {
  return json::object{{"model", "emulator/toy"},
                      {"input", "."},
                      {"raw_prompt_tokens", json::array{151644, 872, 198}},
                      {"max_output_tokens", 8},
                      {"background", true}};
}

json::object first_part(const json::object& response) {
  return response.at("output")
    .as_array()
    .at(0)
    .as_object()
    .at("content")
    .as_array()
    .at(0)
    .as_object();
}

std::vector<int64_t> ints(const json::value& v) {
  std::vector<int64_t> out;
  for (auto& x : v.as_array())
    out.push_back(x.as_int64());
  return out;
}

std::vector<double> doubles(const json::value& v) {
  std::vector<double> out;
  for (auto& x : v.as_array())
    out.push_back(x.to_number<double>());
  return out;
}

std::string error_field(const sync_result& r, const char* field) {
  auto v = r.json();
  if (!v.is_object())
    return "<no json>";
  auto* err = v.as_object().if_contains("error");
  if (!err || !err->is_object())
    return "<no error>";
  auto* f = err->as_object().if_contains(field);
  if (!f || !f->is_string())
    return "<null>";
  return std::string{f->as_string()};
}

// Waits (bounded by 30 s, woken by the emulator's counter updates) until
// pred(stats) holds; returns the statistics as they are then.
template <class Pred>
emu::stats wait_for_stats(emu::server& server, Pred pred) {
  server.wait_until([&](const emu::stats& st) { return pred(st); }, std::chrono::seconds{30});
  return server.snapshot();
}

} // namespace

// -- basics ---------------------------------------------------------------------------

TEST_CASE("emulator serves health and reports its port") {
  fixture f;
  CHECK(f.server.port() != 0);
  CHECK(f.server.base_url()
        == "http://127.0.0.1:" + std::to_string(f.server.port()));
  auto r = f.client.get("/_emulator/health");
  REQUIRE(r.ok());
  CHECK(r.status() == 200);
  CHECK(r.body() == R"({"status":"ok"})");
  CHECK(f.client.get("/nope").status() == 404);
  auto bytes = f.client.get("/_emulator/bytes?n=100000");
  REQUIRE(bytes.ok());
  CHECK(bytes.body().size() == 100000);
  CHECK(f.server.snapshot().count("GET /_emulator/bytes", 200) == 1);
}

TEST_CASE("emulator make() reports a bind failure as an error") {
  fixture f;
  emu::options opts;
  opts.port = f.server.port();
  auto other = emu::server::make(opts);
  CHECK_FALSE(other);
  CHECK_THROWS(emu::server{opts});
}

TEST_CASE("emulator requires the Bearer key") {
  fixture f;
  auto body = json::serialize(basic_body());
  auto r = f.client.post("/v1/responses", body);
  CHECK(r.status() == 401);
  CHECK(error_field(r, "type") == "authentication_error");
  r = f.client.post("/v1/responses", body,
                    {{"Authorization", "Bearer sk_wrong"}});
  CHECK(r.status() == 401);
  CHECK(f.client.get("/v1/responses/resp_x").status() == 401);
  CHECK(f.server.snapshot().inference_runs_total == 0);
}

// -- validation -------------------------------------------------------------------------

TEST_CASE("emulator validates create requests like Sail") {
  fixture f;
  struct bad_case {
    const char* name;
    std::function<void(json::object&)> edit;
    int status;
    const char* param;
  };
  std::vector<bad_case> cases{
    {"missing model", [](json::object& o) { o.erase("model"); }, 400, "model"},
    {"model not a string", [](json::object& o) { o["model"] = 3; }, 400,
     "model"},
    {"missing input", [](json::object& o) { o.erase("input"); }, 400, "input"},
    {"empty input", [](json::object& o) { o["input"] = ""; }, 400, "input"},
    {"empty raw_prompt_tokens",
     [](json::object& o) { o["raw_prompt_tokens"] = json::array{}; }, 400,
     "raw_prompt_tokens"},
    {"too many raw_prompt_tokens",
     [](json::object& o) {
       json::array a;
       a.resize(2'000'001, json::value(1));
       o["raw_prompt_tokens"] = std::move(a);
     },
     400, "raw_prompt_tokens"},
    {"negative token",
     [](json::object& o) { o["raw_prompt_tokens"] = json::array{1, -1}; }, 400,
     "raw_prompt_tokens"},
    {"token too large",
     [](json::object& o) {
       o["raw_prompt_tokens"] = json::array{1, int64_t{2147483648}};
     },
     400, "raw_prompt_tokens"},
    {"non-integer token",
     [](json::object& o) { o["raw_prompt_tokens"] = json::array{1, 1.5}; },
     400, "raw_prompt_tokens"},
    {"string token",
     [](json::object& o) { o["raw_prompt_tokens"] = json::array{1, "2"}; },
     400, "raw_prompt_tokens"},
    {"raw_prompt_tokens not an array",
     [](json::object& o) { o["raw_prompt_tokens"] = 5; }, 400,
     "raw_prompt_tokens"},
    {"max_output_tokens 0", [](json::object& o) { o["max_output_tokens"] = 0; },
     400, "max_output_tokens"},
    {"max_output_tokens negative",
     [](json::object& o) { o["max_output_tokens"] = -3; }, 400,
     "max_output_tokens"},
    {"max_output_tokens fractional",
     [](json::object& o) { o["max_output_tokens"] = 2.5; }, 400,
     "max_output_tokens"},
    {"temperature below 0", [](json::object& o) { o["temperature"] = -0.1; },
     400, "temperature"},
    {"temperature above 2", [](json::object& o) { o["temperature"] = 2.01; },
     400, "temperature"},
    {"temperature not a number",
     [](json::object& o) { o["temperature"] = "hot"; }, 400, "temperature"},
    {"top_p below 0", [](json::object& o) { o["top_p"] = -0.5; }, 400, "top_p"},
    {"top_p above 1", [](json::object& o) { o["top_p"] = 1.5; }, 400, "top_p"},
    {"metadata not an object", [](json::object& o) { o["metadata"] = "x"; },
     400, "metadata"},
    {"non-string metadata value",
     [](json::object& o) { o["metadata"] = json::object{{"n", 1}}; }, 400,
     "metadata.n"},
    {"invalid completion_window",
     [](json::object& o) {
       o["metadata"] = json::object{{"completion_window", "soon"}};
     },
     400, "metadata.completion_window"},
    {"lora with asap",
     [](json::object& o) {
       o["metadata"] = json::object{{"lora", "emulator-lora"},
                                    {"completion_window", "asap"}};
     },
     400, "metadata.completion_window"},
    {"signed lora url with asap",
     [](json::object& o) {
       o["metadata"] = json::object{
         {"tinker_lora_signed_url", "https://example.invalid/a.tar?sig=1"},
         {"completion_window", "asap"}};
     },
     400, "metadata.completion_window"},
    {"flex in the foreground",
     [](json::object& o) {
       o["background"] = false;
       o["metadata"] = json::object{{"completion_window", "flex"}};
     },
     400, "metadata.completion_window"},
    {"stop mixing ids and strings",
     [](json::object& o) { o["stop"] = json::array{1, "x"}; }, 400, "stop"},
    {"background not a bool", [](json::object& o) { o["background"] = "yes"; },
     400, "background"},
    {"unknown lora",
     [](json::object& o) {
       o["metadata"] = json::object{{"lora", "no-such-adapter"}};
     },
     404, "metadata.lora"},
  };
  for (auto& c : cases) {
    INFO(c.name);
    auto body = basic_body();
    c.edit(body);
    auto r = f.create_keyed(body, std::string{"key-"} + c.name);
    REQUIRE(r.ok());
    CHECK(r.status() == c.status);
    CHECK(error_field(r, "param") == c.param);
    auto err = r.json().as_object().at("error").as_object();
    CHECK(err.contains("message"));
    CHECK(err.contains("type"));
    CHECK(err.contains("code"));
  }
  SECTION("non-JSON bodies and bad keys") {
    auto r = f.client.post("/v1/responses", "{not json", f.auth());
    CHECK(r.status() == 400);
    r = f.client.post("/v1/responses", "[1,2]", f.auth());
    CHECK(r.status() == 400);
    r = f.create_keyed(basic_body(), std::string(256, 'k'));
    CHECK(r.status() == 400);
    CHECK(error_field(r, "param") == "Idempotency-Key");
    r = f.create_keyed(basic_body(), std::string(255, 'k'));
    CHECK(r.status() == 202);
  }
  SECTION("rejected requests run no inference") {
    auto st = f.server.snapshot();
    CHECK(st.inference_runs_total == 0);
    CHECK(st.count(create_route, 400) == cases.size() - 1);
    CHECK(st.count(create_route, 404) == 1);
  }
  SECTION("a known lora with a non-asap window is accepted") {
    auto body = basic_body();
    body["metadata"] = json::object{{"lora", "emulator-lora"},
                                    {"completion_window", "priority"}};
    CHECK(f.create(body).status() == 202);
    f.server.add_known_lora("later-lora");
    body["metadata"] = json::object{{"lora", "later-lora"}};
    CHECK(f.create(body).status() == 202);
  }
}

// -- response lifecycle -------------------------------------------------------------------

TEST_CASE("emulator background create answers 202 then completes on poll") {
  fixture f;
  auto body = basic_body();
  body["include"] = json::array{"message.output_text.logprobs"};
  body["metadata"] = json::object{{"completion_window", "priority"}};
  auto r = f.create(body);
  REQUIRE(r.ok());
  REQUIRE(r.status() == 202);
  auto created = r.json().as_object();
  CHECK(created.at("status") == "queued");
  CHECK(created.at("object") == "response");
  std::string id{created.at("id").as_string()};
  CHECK(id.starts_with("resp_"));
  auto done = f.poll_until_completed(id);
  CHECK(done.at("id") == json::value(id));
  CHECK(done.at("model") == "emulator/toy");
  CHECK(done.at("metadata").as_object().at("completion_window") == "priority");
  CHECK(done.at("incomplete_details").is_null());
  CHECK(done.at("created_at").is_int64());
  auto& output = done.at("output").as_array();
  REQUIRE(output.size() == 1);
  auto& msg = output[0].as_object();
  CHECK(msg.at("type") == "message");
  CHECK(msg.at("role") == "assistant");
  auto part = first_part(done);
  CHECK(part.at("type") == "output_text");
  auto ids = ints(part.at("token_ids"));
  auto lps = doubles(part.at("logprobs"));
  CHECK(ids.size() == 8);
  CHECK(lps.size() == ids.size());
  for (auto lp : lps)
    CHECK(lp <= 0.0);
  CHECK(part.at("stop_reason") == "length");
  std::string text;
  for (auto t : ids)
    text += emu::vocabulary().at(static_cast<size_t>(t));
  CHECK(part.at("text") == json::value(text));
  auto& usage = done.at("usage").as_object();
  CHECK(usage.at("input_tokens") == 3);
  CHECK(usage.at("output_tokens") == 8);
  CHECK(usage.at("total_tokens") == 11);
  CHECK(f.client.connects() == 1);
  CHECK(f.server.snapshot().connections_accepted == 1);
}

TEST_CASE("emulator status moves queued -> in_progress -> completed by time") {
  emu::options opts;
  opts.latency.standard.queued = std::chrono::milliseconds{30};
  opts.latency.standard.per_token = std::chrono::milliseconds{5};
  fixture f{opts};
  auto r = f.create(basic_body());
  REQUIRE(r.status() == 202);
  std::string id{r.json().as_object().at("id").as_string()};
  std::vector<std::string> seen{"queued"};
  f.poll_until_completed(id, &seen);
  // Order is fixed; which intermediate states a poll catches is timing.
  std::vector<std::string> order{"queued", "in_progress", "completed"};
  size_t pos = 0;
  for (auto& s : seen) {
    auto it = std::find(order.begin() + static_cast<long>(pos), order.end(), s);
    REQUIRE(it != order.end());
    pos = static_cast<size_t>(it - order.begin());
  }
  CHECK(seen.back() == "completed");
  SECTION("a long queue keeps the response queued, then in_progress") {
    emu::latency_model slow;
    slow.standard.queued = std::chrono::hours{1};
    f.server.set_latency(slow);
    auto r2 = f.create(basic_body());
    std::string id2{r2.json().as_object().at("id").as_string()};
    auto p = f.poll(id2);
    CHECK(p.json().as_object().at("status") == "queued");
    CHECK(p.json().as_object().at("output").as_array().empty());
    // usage is a required object (OpenAPI ResponseUsage): zeros until done.
    auto queued = p.json();
    auto& usage = queued.as_object().at("usage").as_object();
    CHECK(usage.at("output_tokens") == 0);
    CHECK(usage.at("total_tokens") == 0);
    slow.standard.queued = std::chrono::microseconds{0};
    slow.standard.per_token = std::chrono::hours{1};
    f.server.set_latency(slow);
    auto r3 = f.create(basic_body());
    std::string id3{r3.json().as_object().at("id").as_string()};
    CHECK(f.poll(id3).json().as_object().at("status") == "in_progress");
  }
}

TEST_CASE("emulator foreground create answers 200 with the completed response") {
  emu::options opts;
  opts.latency.priority.per_token = std::chrono::milliseconds{2};
  fixture f{opts};
  auto body = basic_body();
  body["background"] = false;
  body["metadata"] = json::object{{"completion_window", "priority"}};
  auto r = f.create(body);
  REQUIRE(r.ok());
  CHECK(r.status() == 200);
  auto o = r.json().as_object();
  CHECK(o.at("status") == "completed");
  CHECK(ints(first_part(o).at("token_ids")).size() == 8);
  CHECK_FALSE(first_part(o).contains("logprobs"));
}

TEST_CASE("emulator answers 404 for an unknown response id") {
  fixture f;
  auto r = f.poll("resp_does_not_exist");
  CHECK(r.status() == 404);
  CHECK(error_field(r, "code") == "response_not_found");
}

// -- idempotency ---------------------------------------------------------------------------

TEST_CASE("emulator idempotency: same key and body replays, never re-runs") {
  fixture f;
  auto body = basic_body();
  auto a = f.create_keyed(body, "k-1");
  auto b = f.create_keyed(body, "k-1");
  REQUIRE(a.status() == 202);
  REQUIRE(b.status() == 202);
  CHECK(a.json().as_object().at("id") == b.json().as_object().at("id"));
  auto st = f.server.snapshot();
  CHECK(st.inference_runs.at("k-1") == 1);
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.inference_runs_total == 1);
  CHECK(st.arrivals.at("k-1").size() == 2);

  SECTION("a replay returns the current state") {
    auto id = std::string{a.json().as_object().at("id").as_string()};
    f.poll_until_completed(id);
    auto c = f.create_keyed(body, "k-1");
    CHECK(c.json().as_object().at("status") == "completed");
    CHECK(c.json().as_object().at("id") == json::value(id));
  }
  SECTION("same key with another body is an idempotency_error") {
    auto other = body;
    other["max_output_tokens"] = 9;
    auto c = f.create_keyed(other, "k-1");
    CHECK(c.status() == 400);
    CHECK(error_field(c, "type") == "idempotency_error");
    CHECK(error_field(c, "code") == "idempotency_error");
    CHECK(f.server.snapshot().inference_runs.at("k-1") == 1);
  }
  SECTION("a byte-different but equal JSON body is another body") {
    auto text = json::serialize(body) + " ";
    auto c = f.client.post("/v1/responses", text,
                           f.auth({{"Idempotency-Key", "k-1"}}));
    CHECK(c.status() == 400);
  }
  SECTION("a request rejected by validation reserves nothing") {
    auto bad = body;
    bad["temperature"] = 5;
    CHECK(f.create_keyed(bad, "k-2").status() == 400);
    auto good = body;
    good["max_output_tokens"] = 4;
    auto c = f.create_keyed(good, "k-2");
    CHECK(c.status() == 202);
    CHECK(f.server.snapshot().inference_runs.at("k-2") == 1);
  }
  SECTION("a foreground replay answers 200 with the same response") {
    auto fg = body;
    fg["background"] = false;
    auto x = f.create_keyed(fg, "k-fg");
    auto y = f.create_keyed(fg, "k-fg");
    CHECK(x.status() == 200);
    CHECK(y.status() == 200);
    CHECK(x.body() == y.body());
    CHECK(f.server.snapshot().inference_runs.at("k-fg") == 1);
  }
}

TEST_CASE("emulator idempotency holds under concurrent replays") {
  fixture f;
  auto body = json::serialize(basic_body());
  constexpr int n = 8;
  std::vector<std::future<std::string>> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back(std::async(std::launch::async, [&] {
      sync_http c{"127.0.0.1", f.server.port()};
      auto r = c.post("/v1/responses", body,
                      f.auth({{"Idempotency-Key", "race"}}));
      return std::string{r.json().as_object().at("id").as_string()};
    }));
  std::set<std::string> distinct;
  for (auto& x : ids)
    distinct.insert(x.get());
  CHECK(distinct.size() == 1);
  CHECK(f.server.snapshot().inference_runs.at("race") == 1);
}

// -- the toy model ---------------------------------------------------------------------------

TEST_CASE("emulator model is deterministic for a prompt and seed") {
  fixture f;
  auto body = basic_body();
  body["include"] = json::array{"message.output_text.logprobs"};
  body["seed"] = 7;
  body["background"] = false;
  auto a = f.create(body).json().as_object();
  auto b = f.create(body).json().as_object();
  CHECK(a.at("id") != b.at("id"));
  CHECK(first_part(a).at("token_ids") == first_part(b).at("token_ids"));
  CHECK(first_part(a).at("logprobs") == first_part(b).at("logprobs"));
  // With a seed, the Idempotency-Key does not enter the sample.
  auto c = f.create_keyed(body, "any-key").json().as_object();
  CHECK(first_part(a).at("token_ids") == first_part(c).at("token_ids"));
  // Another seed or prompt gives another sample.
  body["seed"] = 8;
  body["max_output_tokens"] = 16;
  auto d1 = f.create(body).json().as_object();
  body["seed"] = 9;
  auto d2 = f.create(body).json().as_object();
  CHECK(first_part(d1).at("token_ids") != first_part(d2).at("token_ids"));
}

TEST_CASE("emulator model logprobs respond to temperature and top_p") {
  emu::sample_params p;
  p.prompt = {1, 2, 3};
  p.model = "m";
  p.max_output_tokens = 32;
  auto base = emu::sample(p, 42);
  REQUIRE(base.token_ids.size() == 32);
  CHECK(base.stop_reason == "length");
  for (auto lp : base.logprobs) {
    CHECK(lp <= 0.0);
    CHECK(std::isfinite(lp));
  }
  auto again = emu::sample(p, 42);
  CHECK(again.token_ids == base.token_ids);
  CHECK(again.logprobs == base.logprobs);

  auto cooler = p;
  cooler.temperature = 0.5;
  auto cool = emu::sample(cooler, 42);
  CHECK(cool.logprobs != base.logprobs);
  // Cooling concentrates mass: the mean logprob rises.
  auto mean = [](const std::vector<double>& xs) {
    double s = 0;
    for (auto x : xs)
      s += x;
    return s / static_cast<double>(xs.size());
  };
  CHECK(mean(cool.logprobs) > mean(base.logprobs));

  auto nucleus = p;
  nucleus.top_p = 0.3;
  auto nuc = emu::sample(nucleus, 42);
  CHECK(nuc.logprobs != base.logprobs);
  CHECK(mean(nuc.logprobs) > mean(base.logprobs));

  auto greedy = p;
  greedy.temperature = 0;
  auto g = emu::sample(greedy, 42);
  for (auto lp : g.logprobs)
    CHECK(lp == 0.0);
  auto tiny = p;
  tiny.top_p = 0;
  for (auto lp : emu::sample(tiny, 42).logprobs)
    CHECK(lp == Approx(0.0).margin(1e-12));
  // The greedy path always takes the same token for the same context.
  CHECK(g.token_ids == emu::sample(greedy, 42).token_ids);
  // Another base seed changes the sample.
  CHECK(emu::sample(p, 43).token_ids != base.token_ids);
}

TEST_CASE("emulator model honours stop token ids and stop strings") {
  emu::sample_params p;
  p.prompt = {5, 6, 7, 8};
  p.model = "m";
  p.max_output_tokens = 40;
  auto free_run = emu::sample(p, 42);
  REQUIRE(free_run.token_ids.size() == 40);
  const auto& vocab = emu::vocabulary();
  SECTION("stop token: included, generation ends at its first occurrence") {
    auto stop_token = free_run.token_ids[10];
    auto first = std::find(free_run.token_ids.begin(), free_run.token_ids.end(),
                           stop_token)
                 - free_run.token_ids.begin();
    auto q = p;
    q.stop_token_ids = {stop_token};
    auto r = emu::sample(q, 42);
    CHECK(r.stop_reason == "stop");
    REQUIRE(r.token_ids.size() == static_cast<size_t>(first + 1));
    CHECK(r.token_ids.back() == stop_token);
    CHECK(std::equal(r.token_ids.begin(), r.token_ids.end(),
                     free_run.token_ids.begin()));
    CHECK(r.logprobs.size() == r.token_ids.size());
  }
  SECTION("stop string: ends once the decoded text contains it") {
    std::string stop = vocab[static_cast<size_t>(free_run.token_ids[12])];
    size_t expect = 0;
    std::string text;
    for (size_t i = 0; i < free_run.token_ids.size(); ++i) {
      text += vocab[static_cast<size_t>(free_run.token_ids[i])];
      if (text.find(stop) != std::string::npos) {
        expect = i + 1;
        break;
      }
    }
    auto q = p;
    q.stop_strings = {stop};
    auto r = emu::sample(q, 42);
    CHECK(r.stop_reason == "stop");
    CHECK(r.token_ids.size() == expect);
    CHECK(r.text.find(stop) != std::string::npos);
  }
  SECTION("length") {
    auto q = p;
    q.max_output_tokens = 3;
    auto r = emu::sample(q, 42);
    CHECK(r.stop_reason == "length");
    CHECK(r.token_ids.size() == 3);
  }
}

TEST_CASE("emulator applies stop and length through the API") {
  fixture f;
  auto body = basic_body();
  body["background"] = false;
  body["max_output_tokens"] = 30;
  auto free_run = f.create(body).json().as_object();
  auto ids = ints(first_part(free_run).at("token_ids"));
  REQUIRE(ids.size() == 30);
  auto stop_token = ids[7];
  body["stop"] = json::array{stop_token};
  auto stopped = f.create(body).json().as_object();
  auto sids = ints(first_part(stopped).at("token_ids"));
  CHECK(first_part(stopped).at("stop_reason") == "stop");
  CHECK(stopped.at("status") == "completed");
  CHECK(sids.back() == stop_token);
  CHECK(sids.size() <= 8);
  body["stop"] = json::array{emu::vocabulary()[static_cast<size_t>(ids[4])]};
  auto by_string = f.create(body).json().as_object();
  CHECK(first_part(by_string).at("stop_reason") == "stop");
  CHECK(ints(first_part(by_string).at("token_ids")).size() <= 5);
  body.erase("stop");
  body["max_output_tokens"] = 2;
  auto short_run = f.create(body).json().as_object();
  CHECK(first_part(short_run).at("stop_reason") == "length");
  CHECK(short_run.at("status") == "completed");
  CHECK(ints(first_part(short_run).at("token_ids")).size() == 2);
  // Without max_output_tokens the default length applies.
  body.erase("max_output_tokens");
  auto dflt = f.create(body).json().as_object();
  CHECK(ints(first_part(dflt).at("token_ids")).size()
        == static_cast<size_t>(f.server.config().default_max_output_tokens));
}

// -- Tinker -----------------------------------------------------------------------------------

TEST_CASE("emulator Tinker archive: 302 and 200 modes, auth, still building") {
  emu::options opts;
  opts.still_building_calls = 2;
  fixture f{opts};
  const std::string path
    = "/api/v1/training_runs/run-1:train:0/checkpoints/sampler_weights/step-40";
  auto h = f.tinker_auth();
  CHECK(f.client.get(path + "/archive").status() == 401);
  CHECK(f.client.get(path + "/archive", {{"X-API-Key", "tml-wrong"}}).status()
        == 401);
  auto r1 = f.client.get(path + "/archive", h);
  auto r2 = f.client.get(path + "/archive", h);
  CHECK(r1.status() == 503);
  CHECK(r2.status() == 503);
  CHECK(r1.json().as_object().contains("detail"));
  auto r3 = f.client.get(path + "/archive", h);
  REQUIRE(r3.status() == 302);
  auto location = r3.header("Location");
  CHECK(location.starts_with(f.server.base_url() + "/_emulator/archive/"));
  CHECK(location.find("Signature=") != std::string::npos);
  CHECK(r3.header("Expires").ends_with(" GMT"));
  // The signed URL is served.
  auto target = location.substr(f.server.base_url().size());
  CHECK(f.client.get(target).status() == 200);

  f.server.set_archive_mode(emu::archive_mode::json);
  auto r4 = f.client.get(path + "/archive", h);
  REQUIRE(r4.status() == 200);
  auto o = r4.json().as_object();
  CHECK(std::string{o.at("url").as_string()}.starts_with(f.server.base_url()));
  std::string expires{o.at("expires").as_string()};
  CHECK(expires.size() == 20);
  CHECK(expires.back() == 'Z');
  // Another checkpoint has its own still-building count.
  CHECK(f.client
          .get("/api/v1/training_runs/run-1:train:0/checkpoints/weights/s1/archive",
               h)
          .status()
        == 503);
  auto st = f.server.snapshot();
  CHECK(st.count("GET tinker archive", 503) == 3);
  CHECK(st.count("GET tinker archive", 401) == 2);
}

TEST_CASE("emulator Tinker ttl and call order") {
  emu::options opts;
  opts.known_checkpoints = {"tinker://run-2/weights/final"};
  fixture f{opts};
  const std::string base = "/api/v1/training_runs/run-2/checkpoints/weights/final";
  auto h = f.tinker_auth();
  using http::verb;
  auto put = [&](const std::string& body, const header_list& hdrs) {
    return f.client.request(verb::put, base + "/ttl", body, hdrs);
  };
  CHECK(put(R"({"ttl_seconds": 3600})", {}).status() == 401);
  auto ok = put(R"({"ttl_seconds": 3600})", h);
  CHECK(ok.status() == 200);
  CHECK(f.server.checkpoint_ttl("tinker://run-2/weights/final") == 3600);
  CHECK(put(R"({"ttl_seconds": 0})", h).status() == 400);
  CHECK(put(R"({"ttl_seconds": -5})", h).status() == 400);
  CHECK(put(R"({"ttl_seconds": "long"})", h).status() == 400);
  CHECK(put(R"({"ttl": 5})", h).status() == 400);
  CHECK(put("not json", h).status() == 400);
  CHECK(put(R"({"ttl_seconds": null})", h).status() == 200);
  CHECK(f.server.checkpoint_ttl("tinker://run-2/weights/final") == 0);
  CHECK(f.client.get(base + "/archive", h).status() == 302);
  // Unknown checkpoint and bad kind.
  CHECK(f.client
          .request(verb::put,
                   "/api/v1/training_runs/run-2/checkpoints/weights/other/ttl",
                   R"({"ttl_seconds": 5})", h)
          .status()
        == 404);
  CHECK(f.client
          .request(verb::put,
                   "/api/v1/training_runs/run-2/checkpoints/bogus/final/ttl",
                   R"({"ttl_seconds": 5})", h)
          .status()
        == 400);
  auto calls = f.server.snapshot().tinker_calls.at("tinker://run-2/weights/final");
  // Every authenticated call on a valid id is recorded, rejected or not.
  std::vector<std::string> expected(7, "ttl");
  expected.emplace_back("archive");
  CHECK(calls == expected);
}

// -- faults -------------------------------------------------------------------------------------

TEST_CASE("emulator faults: 429 and 529 carry Retry-After and reserve nothing") {
  fixture f;
  emu::fault_settings fs;
  fs.scripted = {fault_kind::status_429, fault_kind::status_529};
  fs.retry_after = std::chrono::seconds{2};
  f.server.set_faults(fs);
  auto body = basic_body();
  auto a = f.create_keyed(body, "rl");
  CHECK(a.status() == 429);
  CHECK(a.header("Retry-After") == "2");
  CHECK(error_field(a, "type") == "rate_limit_error");
  auto b = f.create_keyed(body, "rl");
  CHECK(b.status() == 529);
  CHECK(b.header("Retry-After") == "2");
  auto st = f.server.snapshot();
  CHECK_FALSE(st.inference_runs.contains("rl"));
  auto c = f.create_keyed(body, "rl");
  CHECK(c.status() == 202);
  st = f.server.snapshot();
  CHECK(st.inference_runs.at("rl") == 1);
  CHECK(st.fault_count(fault_kind::status_429) == 1);
  CHECK(st.fault_count(fault_kind::status_529) == 1);
  auto& arr = st.arrivals.at("rl");
  REQUIRE(arr.size() == 3);
  CHECK(arr[0].status == 429);
  CHECK(arr[0].fault == "status_429");
  CHECK(arr[1].status == 529);
  CHECK(arr[2].status == 202);
  CHECK(arr[0].at <= arr[1].at);
  CHECK(arr[0].ms <= arr[2].ms);

  SECTION("Retry-After as an HTTP-date") {
    emu::fault_settings fd;
    fd.scripted = {fault_kind::status_429};
    fd.retry_after_http_date = true;
    f.server.set_faults(fd);
    auto d = f.create(body);
    CHECK(d.status() == 429);
    CHECK(d.header("Retry-After").ends_with(" GMT"));
  }
}

TEST_CASE("emulator faults: 5xx before and after acceptance") {
  fixture f;
  auto body = basic_body();
  for (auto kind : {fault_kind::status_500, fault_kind::status_502,
                    fault_kind::status_503, fault_kind::status_504}) {
    auto name = std::string{emu::to_string(kind)};
    INFO(name);
    int expected = std::stoi(name.substr(7));
    // Before acceptance: no task, no inference.
    emu::fault_settings before;
    before.scripted = {kind};
    before.after_accept_fraction = 0;
    f.server.set_faults(before);
    auto key = "pre-" + name;
    auto r = f.create_keyed(body, key);
    CHECK(r.status() == expected);
    CHECK(error_field(r, "type") == "server_error");
    CHECK_FALSE(f.server.snapshot().inference_runs.contains(key));
    // After acceptance: the task exists; a retry replays it.
    emu::fault_settings after;
    after.scripted = {kind};
    after.after_accept_fraction = 1;
    f.server.set_faults(after);
    key = "post-" + name;
    CHECK(f.create_keyed(body, key).status() == expected);
    CHECK(f.server.snapshot().inference_runs.at(key) == 1);
    auto retry = f.create_keyed(body, key);
    CHECK(retry.status() == 202);
    CHECK(f.server.snapshot().inference_runs.at(key) == 1);
    CHECK(f.server.snapshot().fault_count(kind) == 2);
  }
  SECTION("503 may carry Retry-After") {
    emu::fault_settings fs;
    fs.scripted = {fault_kind::status_503};
    fs.retry_after_on_503 = true;
    f.server.set_faults(fs);
    CHECK(f.create(body).header("Retry-After") == "1");
  }
}

TEST_CASE("emulator faults: reset and truncated body") {
  fixture f;
  auto body = basic_body();
  emu::fault_settings fs;
  fs.scripted = {fault_kind::connection_reset, fault_kind::truncated_body};
  fs.after_accept_fraction = 1;
  f.server.set_faults(fs);
  // Reset: no answer, the connection is gone.
  auto a = f.create_keyed(body, "rt");
  CHECK_FALSE(a.ok());
  CHECK_FALSE(f.client.connected());
  // Truncated: the header announces more body than arrives before the close.
  auto b = f.create_keyed(body, "rt");
  CHECK_FALSE(b.ok());
  CHECK((b.ec == http::error::partial_message || b.ec == boost::asio::error::eof));
  auto c = f.create_keyed(body, "rt");
  REQUIRE(c.ok());
  CHECK(c.status() == 202);
  auto st = f.server.snapshot();
  CHECK(st.inference_runs.at("rt") == 1);
  CHECK(st.fault_count(fault_kind::connection_reset) == 1);
  CHECK(st.fault_count(fault_kind::truncated_body) == 1);
  CHECK(st.count(create_route, 0) == 1);
  CHECK(st.connections_accepted == 3);
  auto& arr = st.arrivals.at("rt");
  REQUIRE(arr.size() == 3);
  CHECK(arr[0].status == 0);
  CHECK(arr[1].fault == "truncated_body");
}

TEST_CASE("emulator faults: malformed JSON, missing token_ids, length mismatch") {
  fixture f;
  auto body = basic_body();
  body["include"] = json::array{"message.output_text.logprobs"};
  auto r = f.create(body);
  std::string id{r.json().as_object().at("id").as_string()};
  f.poll_until_completed(id);
  emu::fault_settings fs;
  fs.routes = emu::route_poll;
  fs.scripted = {fault_kind::malformed_json, fault_kind::missing_token_ids,
                 fault_kind::logprob_mismatch};
  f.server.set_faults(fs);
  auto m = f.poll(id);
  CHECK(m.status() == 200);
  CHECK(m.json().is_null());
  auto missing = f.poll(id);
  CHECK(missing.status() == 200);
  CHECK_FALSE(first_part(missing.json().as_object()).contains("token_ids"));
  auto mismatch = first_part(f.poll(id).json().as_object());
  CHECK(mismatch.at("logprobs").as_array().size()
        == mismatch.at("token_ids").as_array().size() + 1);
  auto clean = first_part(f.poll(id).json().as_object());
  CHECK(clean.at("logprobs").as_array().size()
        == clean.at("token_ids").as_array().size());
  auto st = f.server.snapshot();
  CHECK(st.fault_count(fault_kind::malformed_json) == 1);
  CHECK(st.fault_count(fault_kind::missing_token_ids) == 1);
  CHECK(st.fault_count(fault_kind::logprob_mismatch) == 1);
  CHECK(st.poll_arrivals.at(id).size() >= 5);
}

TEST_CASE("emulator faults: slow responses and route masks") {
  fixture f;
  emu::fault_settings fs;
  fs.set(fault_kind::slow_response, 1.0);
  fs.slow_delay = std::chrono::milliseconds{20};
  fs.routes = emu::route_create;
  f.server.set_faults(fs);
  auto r = f.create(basic_body());
  CHECK(r.status() == 202);
  std::string id{r.json().as_object().at("id").as_string()};
  CHECK(f.poll(id).status() == 200); // the poll route is not faulted
  auto st = f.server.snapshot();
  CHECK(st.fault_count(fault_kind::slow_response) == 1);
  CHECK(f.server.faults().get(fault_kind::slow_response) == 1.0);
}

TEST_CASE("emulator faults on poll and Tinker routes") {
  emu::options opts;
  opts.archive = emu::archive_mode::json;
  fixture f{opts};
  auto r = f.create(basic_body());
  std::string id{r.json().as_object().at("id").as_string()};
  emu::fault_settings fs;
  fs.scripted = {fault_kind::status_429, fault_kind::connection_reset,
                 fault_kind::status_503, fault_kind::truncated_body};
  f.server.set_faults(fs);
  auto a = f.poll(id);
  CHECK(a.status() == 429);
  CHECK(a.header("Retry-After") == "1");
  CHECK_FALSE(f.poll(id).ok());
  const std::string path
    = "/api/v1/training_runs/r/checkpoints/weights/w/archive";
  auto t = f.client.get(path, f.tinker_auth());
  CHECK(t.status() == 503);
  CHECK(t.json().as_object().contains("detail"));
  CHECK_FALSE(f.client.get(path, f.tinker_auth()).ok());
  CHECK(f.client.get(path, f.tinker_auth()).status() == 200);
  auto st = f.server.snapshot();
  CHECK(st.poll_arrivals.at(id).size() == 2);
  CHECK(st.poll_arrivals.at(id)[1].status == 0);
}

TEST_CASE("emulator faults: 30% 503s and resets never cause a second inference") {
  emu::options opts;
  opts.faults.set(fault_kind::status_503, 0.3);
  opts.faults.set(fault_kind::connection_reset, 0.3);
  opts.faults.seed = 1234;
  opts.faults.routes = emu::route_all;
  fixture f{opts};
  constexpr int keys = 40;
  int attempts_total = 0;
  std::set<std::string> ids;
  for (int k = 0; k < keys; ++k) {
    auto key = "chaos-" + std::to_string(k);
    auto body = basic_body();
    body["seed"] = k;
    bool done = false;
    for (int attempt = 0; attempt < 200 && !done; ++attempt) {
      ++attempts_total;
      auto r = f.create_keyed(body, key);
      if (r.ok() && r.status() == 202) {
        ids.insert(std::string{r.json().as_object().at("id").as_string()});
        done = true;
      }
    }
    REQUIRE(done);
  }
  auto st = f.server.snapshot();
  CHECK(ids.size() == keys);
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.inference_runs.size() == keys);
  CHECK(st.inference_runs_total == keys);
  CHECK(st.fault_count(fault_kind::status_503) > 0);
  CHECK(st.fault_count(fault_kind::connection_reset) > 0);
  CHECK(attempts_total > keys);
}

// -- webhooks --------------------------------------------------------------------------------

TEST_CASE("emulator delivers completion webhooks with the Bearer token") {
  std::promise<std::pair<std::string, std::string>> got;
  std::atomic<int> calls{0};
  sail::http_server receiver{
    sail::http_server_options{}, [&](sail::http_server_context&& ctx) {
      auto n = ++calls;
      sail::http_server_response res{n < 3 ? http::status::internal_server_error
                                           : http::status::ok,
                                     11};
      if (n == 3)
        got.set_value({std::string{ctx.request()[http::field::authorization]},
                       ctx.request().body()});
      ctx.respond(std::move(res));
    }};
  REQUIRE_FALSE(receiver.start());
  emu::options opts;
  opts.webhook_retry_delay = std::chrono::milliseconds{5};
  fixture f{opts};
  auto body = basic_body();
  body["metadata"] = json::object{
    {"completion_webhook",
     "http://127.0.0.1:" + std::to_string(receiver.port()) + "/hook"},
    {"webhook_token", "whsec_token_1"}};
  auto r = f.create(body);
  REQUIRE(r.status() == 202);
  auto created = r.json().as_object();
  CHECK_FALSE(created.at("metadata").as_object().contains("webhook_token"));
  auto fut = got.get_future();
  REQUIRE(fut.wait_for(std::chrono::seconds{30}) == std::future_status::ready);
  auto [authz, payload] = fut.get();
  // Extra parentheses: Catch must not print the token on failure.
  CHECK((authz == "Bearer whsec_token_1"));
  auto delivered = json::parse(payload).as_object();
  CHECK(delivered.at("id") == created.at("id"));
  CHECK(delivered.at("status") == "completed");
  CHECK(first_part(delivered).contains("token_ids"));
  auto st = wait_for_stats(f.server, [](const emu::stats& s) {
    return s.webhooks.delivered == 1;
  });
  CHECK(st.webhooks.delivered == 1);
  CHECK(st.webhooks.attempts == 3);
  CHECK(st.webhooks.failed == 0);
}

TEST_CASE("emulator gives up on a webhook after the retries") {
  // A port that refuses connections: bind a server, note the port, stop it.
  uint16_t dead_port;
  {
    sail::http_server tmp{sail::http_server_options{},
                          [](sail::http_server_context&&) {}};
    REQUIRE_FALSE(tmp.start());
    dead_port = tmp.port();
  }
  emu::options opts;
  opts.webhook_retry_delay = std::chrono::milliseconds{1};
  fixture f{opts};
  auto body = basic_body();
  body["metadata"] = json::object{
    {"completion_webhook",
     "http://127.0.0.1:" + std::to_string(dead_port) + "/hook"},
    {"webhook_token", "t"}};
  REQUIRE(f.create(body).status() == 202);
  auto st = wait_for_stats(f.server, [](const emu::stats& s) {
    return s.webhooks.failed == 1;
  });
  CHECK(st.webhooks.failed == 1);
  CHECK(st.webhooks.attempts == 4);
  CHECK(st.webhooks.delivered == 0);
}

// -- stats -----------------------------------------------------------------------------------

TEST_CASE("emulator stats JSON") {
  fixture f;
  CHECK(f.create_keyed(basic_body(), "s-1").status() == 202);
  CHECK(f.client.post("/v1/responses", "{}", f.auth()).status() == 400);
  auto r = f.client.get("/_emulator/stats");
  REQUIRE(r.status() == 200);
  auto o = r.json().as_object();
  CHECK(o.at("requests").as_object().at(create_route).as_object().at("202")
        == 1);
  CHECK(o.at("requests").as_object().at(create_route).as_object().at("400")
        == 1);
  CHECK(o.at("requests").as_object().at("GET /_emulator/stats").as_object().at(
          "200")
        == 1);
  CHECK(o.at("connections_accepted") == 1);
  CHECK(o.at("inference_runs").as_object().at("s-1") == 1);
  CHECK(o.at("max_runs_per_key") == 1);
  CHECK(o.at("inference_runs_total") == 1);
  CHECK(o.at("faults").is_object());
  CHECK(o.at("webhooks").is_object());
  auto& arr = o.at("arrivals").as_object().at("s-1").as_array();
  REQUIRE(arr.size() == 1);
  CHECK(arr[0].as_object().at("status") == 202);
  CHECK(arr[0].as_object().at("ms").is_double());
  auto summary = f.client.get("/_emulator/stats?summary=1").json().as_object();
  CHECK_FALSE(summary.contains("arrivals"));
  CHECK(summary.contains("max_runs_per_key"));
  auto api = json::parse(f.server.stats_json()).as_object();
  CHECK(api.at("inference_runs").as_object().at("s-1") == 1);
  CHECK(f.server.snapshot().count(poll_route, 200) == 0);
}

// -- windows, LoRA, per-model table ------------------------------

TEST_CASE("emulator accepts the 2026 window names, balanced has its own latency") {
  emu::options opts;
  opts.latency.balanced.queued = std::chrono::hours{1};
  fixture f{opts};
  for (auto w : {"asap", "priority", "balanced", "standard", "flex"}) {
    INFO(w);
    auto body = basic_body();
    body["metadata"] = json::object{{"completion_window", w}};
    auto r = f.create_keyed(body, std::string{"win-"} + w);
    REQUIRE(r.status() == 202);
    std::string id{r.json().as_object().at("id").as_string()};
    // Only balanced is slow: its own latency entry, not standard's.
    auto polled = f.poll(id).json().as_object();
    CHECK(polled.at("status") == (std::string{w} == "balanced" ? "queued" : "completed"));
    CHECK(polled.at("metadata").as_object().at("completion_window") == w);
  }
  auto body = basic_body();
  body["metadata"] = json::object{{"completion_window", "15m"}};
  auto r = f.create(body);
  CHECK(r.status() == 400);
  CHECK(error_field(r, "param") == "metadata.completion_window");
  CHECK(error_field(r, "message").find("balanced") != std::string::npos);
}

TEST_CASE("emulator refuses LoRA with asap with Sail's live message") {
  fixture f;
  for (auto lora_key : {"lora", "tinker_lora_signed_url"}) {
    INFO(lora_key);
    auto body = basic_body();
    body["metadata"] = json::object{
      {lora_key, std::string{lora_key} == "lora" ? "emulator-lora"
                                                 : "https://example.invalid/a.tar?sig=1"},
      {"completion_window", "asap"}};
    auto r = f.create(body);
    CHECK(r.status() == 400);
    CHECK(error_field(r, "message") == "lora requests cannot use completion_window=asap");
    CHECK(error_field(r, "param") == "metadata.completion_window");
  }
  CHECK(f.server.snapshot().inference_runs_total == 0);
}

TEST_CASE("emulator per-model window table: an unsupported explicit window is a 400") {
  emu::options opts;
  opts.model_windows["vendor/narrow"] = {"priority", "flex"};
  opts.latency.flex.queued = std::chrono::hours{1};
  fixture f{opts};
  auto body = basic_body();
  body["model"] = "vendor/narrow";
  body["metadata"] = json::object{{"completion_window", "standard"}};
  auto r = f.create(body);
  CHECK(r.status() == 400);
  CHECK(error_field(r, "param") == "metadata.completion_window");
  CHECK(error_field(r, "code") == "unsupported_value");
  body["metadata"] = json::object{{"completion_window", "balanced"}};
  CHECK(f.create(body).status() == 400);
  body["metadata"] = json::object{{"completion_window", "priority"}};
  CHECK(f.create(body).status() == 202);
  // Omitted: standard is not supported, so a background request runs on flex
  // (slow here) rather than falling back to a fast window.
  body.erase("metadata");
  auto omitted = f.create(body);
  REQUIRE(omitted.status() == 202);
  std::string id{omitted.json().as_object().at("id").as_string()};
  CHECK(f.poll(id).json().as_object().at("status") == "queued");
  // A model the table does not list supports every window.
  body["model"] = "emulator/toy";
  body["metadata"] = json::object{{"completion_window", "standard"}};
  CHECK(f.create(body).status() == 202);
  CHECK(f.server.snapshot().inference_runs_total == 3);
}

// -- user, webhooks (item 10) ----------------------------------------------------------------

TEST_CASE("emulator limits user to 256 characters") {
  fixture f;
  auto body = basic_body();
  std::string e_acute = "\xc3\xa9";
  std::string user;
  for (int i = 0; i < 256; ++i)
    user += e_acute; // 256 characters, 512 bytes
  body["user"] = user;
  CHECK(f.create(body).status() == 202);
  body["user"] = user + "x";
  auto r = f.create(body);
  CHECK(r.status() == 400);
  CHECK(error_field(r, "param") == "user");
  body["user"] = 42;
  CHECK(f.create(body).status() == 400);
  CHECK(f.server.snapshot().inference_runs_total == 1);
}

TEST_CASE("emulator ignores an invalid completion_webhook silently") {
  fixture f;
  int n = 0;
  for (auto url : {"ftp://x/y", "not a url", "https:///nohost"}) {
    INFO(url);
    auto body = basic_body();
    body["metadata"] = json::object{{"completion_webhook", url}, {"webhook_token", "t"}};
    auto r = f.create_keyed(body, "hook-" + std::to_string(++n));
    REQUIRE(r.status() == 202);
    std::string id{r.json().as_object().at("id").as_string()};
    CHECK(f.poll_until_completed(id).at("status") == "completed");
  }
  auto st = f.server.snapshot();
  CHECK(st.webhooks.ignored_invalid == 3);
  CHECK(st.webhooks.attempts == 0);
  CHECK(st.responses == 3);
}

TEST_CASE("emulator webhook timeout: 30 s by default, configurable") {
  CHECK(emu::options{}.webhook_timeout == std::chrono::seconds{30});
  // A listener that never accepts: the kernel completes the handshake, the
  // emulator writes its POST and then waits for an answer that never comes.
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor silent{
    ioc, {boost::asio::ip::make_address("127.0.0.1"), 0}};
  auto port = silent.local_endpoint().port();
  emu::options opts;
  opts.webhook_timeout = std::chrono::milliseconds{50};
  opts.webhook_retries = 1;
  opts.webhook_retry_delay = std::chrono::milliseconds{1};
  fixture f{opts};
  auto body = basic_body();
  body["metadata"]
    = json::object{{"completion_webhook", "http://127.0.0.1:" + std::to_string(port) + "/h"}};
  REQUIRE(f.create(body).status() == 202);
  auto st = wait_for_stats(f.server, [](const emu::stats& s) { return s.webhooks.failed == 1; });
  CHECK(st.webhooks.failed == 1);
  CHECK(st.webhooks.attempts == 2);
  CHECK(st.webhooks.delivered == 0);
}

// -- status vocabulary and outcomes (item 9) -------------------------------------------------

TEST_CASE("emulator status vocabulary: guides or openapi words") {
  for (auto vocab : {emu::status_vocabulary::guides, emu::status_vocabulary::openapi}) {
    bool openapi = vocab == emu::status_vocabulary::openapi;
    INFO(emu::to_string(vocab));
    emu::options opts;
    opts.vocabulary = vocab;
    opts.latency.standard.queued = std::chrono::hours{1};
    opts.latency.priority.per_token = std::chrono::hours{1};
    fixture f{opts};
    auto r = f.create(basic_body());
    REQUIRE(r.status() == 202);
    CHECK(r.json().as_object().at("status") == (openapi ? "pending" : "queued"));
    std::string queued_id{r.json().as_object().at("id").as_string()};
    CHECK(f.poll(queued_id).json().as_object().at("status") == (openapi ? "pending" : "queued"));
    auto body = basic_body();
    body["metadata"] = json::object{{"completion_window", "priority"}};
    std::string running_id{f.create(body).json().as_object().at("id").as_string()};
    CHECK(f.poll(running_id).json().as_object().at("status")
          == (openapi ? "running" : "in_progress"));
    body["metadata"] = json::object{{"completion_window", "asap"}};
    std::string done_id{f.create(body).json().as_object().at("id").as_string()};
    CHECK(f.poll(done_id).json().as_object().at("status") == "completed");
  }
}

TEST_CASE("emulator outcomes: incomplete, failed and cancelled by metadata") {
  fixture f;
  auto make = [&](const char* outcome) {
    auto body = basic_body();
    body["include"] = json::array{"message.output_text.logprobs"};
    json::array stop_ids; // 0..47: a completed sample stops within 8 tokens
    for (int t = 0; t < 48; ++t)
      stop_ids.push_back(t);
    body["stop"] = stop_ids;
    body["metadata"] = json::object{{"emulator_outcome", outcome}};
    auto r = f.create_keyed(body, std::string{"outcome-"} + outcome);
    REQUIRE(r.status() == 202);
    CHECK(r.json().as_object().at("status") == "queued");
    std::string id{r.json().as_object().at("id").as_string()};
    return f.poll(id).json().as_object();
  };
  SECTION("incomplete: partial output and usage, reason max_output_tokens") {
    auto o = make("incomplete");
    CHECK(o.at("status") == "incomplete");
    CHECK(o.at("incomplete_details").as_object().at("reason") == "max_output_tokens");
    auto part = first_part(o);
    CHECK(ints(part.at("token_ids")).size() == 8); // ran to the cap, stop ignored
    CHECK(doubles(part.at("logprobs")).size() == 8);
    CHECK_FALSE(part.contains("stop_reason"));
    CHECK(o.at("usage").as_object().at("output_tokens") == 8);
    CHECK(o.at("error").is_null());
  }
  for (auto outcome : {"failed", "cancelled"}) {
    SECTION(std::string{outcome} + ": no output, an error object") {
      auto o = make(outcome);
      CHECK(o.at("status") == outcome);
      CHECK(o.at("output").as_array().empty());
      auto& err = o.at("error").as_object();
      CHECK(err.at("code").is_string());
      CHECK(err.at("message").is_string());
      CHECK(o.at("usage").as_object().at("output_tokens") == 0);
    }
  }
  SECTION("completed is the default and may be named") {
    auto o = make("completed");
    CHECK(o.at("status") == "completed");
    CHECK(first_part(o).at("stop_reason") == "stop");
  }
  SECTION("any other value is a 400 naming the key") {
    auto body = basic_body();
    body["metadata"] = json::object{{"emulator_outcome", "exploded"}};
    auto r = f.create(body);
    CHECK(r.status() == 400);
    CHECK(error_field(r, "param") == "metadata.emulator_outcome");
  }
}

// -- the Idempotency-Key in the toy model (item 7) ----------------------------------------------

TEST_CASE("emulator mixes the Idempotency-Key into a sample without a seed") {
  fixture f;
  auto body = basic_body();
  body["background"] = false;
  body["max_output_tokens"] = 16;
  body["include"] = json::array{"message.output_text.logprobs"};
  std::set<std::vector<int64_t>> distinct;
  for (int i = 0; i < 4; ++i) {
    auto key = "member." + std::to_string(i);
    auto r = f.create_keyed(body, key);
    REQUIRE(r.status() == 200);
    auto ids = ints(first_part(r.json().as_object()).at("token_ids"));
    distinct.insert(ids);
    // The public model function predicts it from prompt, fields and key.
    emu::sample_params p;
    p.prompt = {151644, 872, 198};
    p.model = "emulator/toy";
    p.max_output_tokens = 16;
    p.idempotency_key = key;
    CHECK(emu::sample(p, f.server.config().seed).token_ids == ids);
  }
  CHECK(distinct.size() == 4);
  // A replay under the same key and body: the identical stored response.
  auto first = f.create_keyed(body, "member.0");
  auto again = f.create_keyed(body, "member.0");
  CHECK(first.body() == again.body());
  auto st = f.server.snapshot();
  CHECK(st.inference_runs.at("member.0") == 1);
  CHECK(st.max_runs_per_key == 1);
  // Greedy sampling does not depend on the key.
  body["temperature"] = 0;
  auto g1 = f.create_keyed(body, "greedy-1").json().as_object();
  auto g2 = f.create_keyed(body, "greedy-2").json().as_object();
  CHECK(first_part(g1).at("token_ids") == first_part(g2).at("token_ids"));
}

// -- request log, prompt_cache_key, timings (items 6, 11; signed URLs) --------------------------

TEST_CASE("emulator records prompt_cache_key and the times of each create") {
  emu::options opts;
  opts.latency.standard.queued = std::chrono::milliseconds{20};
  fixture f{opts};
  auto body = basic_body();
  body["prompt_cache_key"] = "group-7";
  auto r = f.create_keyed(body, "pck-1");
  REQUIRE(r.status() == 202);
  CHECK(f.create_keyed(basic_body(), "pck-2").status() == 202);
  body["prompt_cache_key"] = 3;
  CHECK(f.create_keyed(body, "pck-3").status() == 400);
  std::string id{r.json().as_object().at("id").as_string()};
  f.poll_until_completed(id);
  auto st = f.server.snapshot();
  CHECK(st.prompt_cache_keys.at("pck-1") == "group-7");
  CHECK(st.prompt_cache_keys.at("pck-2").empty());
  CHECK(st.prompt_cache_keys.count("pck-3") == 0);
  auto& t = st.timings.at("pck-1");
  CHECK(t.id == id);
  CHECK(t.done_ms - t.accepted_ms >= 20.0 - 1e-6); // doubles of ms: 20 may come out as 19.99...
  CHECK(t.delivered_ms >= t.done_ms);
  CHECK(st.timings.at("pck-2").delivered_ms == -1); // never polled to the end
  auto o = json::parse(f.server.stats_json()).as_object();
  CHECK(o.at("prompt_cache_keys").as_object().at("pck-1") == "group-7");
  CHECK(o.at("timings").as_object().at("pck-1").as_object().at("id") == json::value(id));
}

TEST_CASE("emulator request log: bounded, raw bodies, the headers that matter") {
  SECTION("off by default") {
    fixture f;
    CHECK(f.create(basic_body()).status() == 202);
    CHECK(f.server.request_log().empty());
    CHECK(f.client.get("/_emulator/requests").body() == "[]");
  }
  SECTION("on: every request, oldest dropped beyond the cap") {
    emu::options opts;
    opts.request_log_capacity = 3;
    opts.request_log_body_cap = 64;
    fixture f{opts};
    auto body = json::serialize(basic_body());
    auto r = f.client.post("/v1/responses", body,
                           f.auth({{"Idempotency-Key", "log-1"},
                                   {"X-Sail-Voyage-Id", "voyage-9"},
                                   {"X-Unrelated", "x"}}));
    REQUIRE(r.status() == 202);
    auto log = f.server.request_log();
    REQUIRE(log.size() == 1);
    auto& e = log[0];
    CHECK(e.seq == 1);
    CHECK(e.method == "POST");
    CHECK(e.target == "/v1/responses");
    CHECK(e.route == create_route);
    CHECK(e.status == 202);
    CHECK(e.header("idempotency-key") == "log-1");
    CHECK(e.header("X-Sail-Voyage-Id") == "voyage-9");
    CHECK(e.header("Authorization").empty()); // never recorded
    CHECK(e.header("X-Unrelated").empty());
    CHECK(e.headers.size() == 2);
    // Bodies are cut at the cap (the body is longer than 64 bytes).
    CHECK(e.truncated);
    CHECK(e.request_body == body.substr(0, 64));
    CHECK(e.response_body == r.body().substr(0, 64));
    std::string id{r.json().as_object().at("id").as_string()};
    f.poll(id);
    f.client.get("/nope");
    f.client.get("/_emulator/stats"); // introspection is not logged
    f.poll(id);
    log = f.server.request_log();
    REQUIRE(log.size() == 3);
    CHECK(log[0].seq == 2);
    CHECK(log[0].route == poll_route);
    CHECK(log[0].request_body.empty());
    CHECK(log[1].status == 404);
    CHECK(log[2].seq == 4);
    CHECK(f.server.snapshot().request_log_dropped == 1);
    auto served = f.client.get("/_emulator/requests").json().as_array();
    REQUIRE(served.size() == 3);
    CHECK(served[2].as_object().at("route") == poll_route);
    CHECK(served[2].as_object().at("status") == 200);
    CHECK(served[2].as_object().at("response_body").is_string());
  }
  SECTION("faults: the body as sent, the fault named") {
    emu::options opts;
    opts.request_log_capacity = 10;
    opts.faults.routes = emu::route_create;
    opts.faults.scripted = {fault_kind::status_503};
    opts.faults.after_accept_fraction = 0.0;
    fixture f{opts};
    CHECK(f.create_keyed(basic_body(), "f-1").status() == 503);
    auto log = f.server.request_log();
    REQUIRE(log.size() == 1);
    CHECK(log[0].fault == "status_503");
    CHECK(json::parse(log[0].response_body).as_object().contains("error"));
  }
}

TEST_CASE("emulator refuses a create carrying a signed URL it handed out that expired") {
  auto signed_url = [](fixture& f) {
    f.server.set_archive_mode(emu::archive_mode::json);
    auto r = f.client.get("/api/v1/training_runs/run-1/checkpoints/sampler_weights/s1/archive",
                          f.tinker_auth());
    REQUIRE(r.status() == 200);
    return std::string{r.json().as_object().at("url").as_string()};
  };
  auto body_with = [](const std::string& url) {
    auto body = basic_body();
    body["metadata"] = json::object{{"tinker_lora_signed_url", url},
                                    {"adapter_config", R"({"r":32})"},
                                    {"completion_window", "priority"}};
    return body;
  };
  SECTION("expired: 400 naming the field, never echoing the URL, counted") {
    emu::options opts;
    opts.archive_url_ttl = std::chrono::milliseconds{0}; // expired when handed out
    fixture f{opts};
    auto url = signed_url(f);
    auto r = f.create_keyed(body_with(url), "expired-1");
    CHECK(r.status() == 400);
    CHECK(error_field(r, "param") == "metadata.tinker_lora_signed_url");
    CHECK(r.body().find("Signature") == std::string::npos);
    auto st = f.server.snapshot();
    CHECK(st.expired_signed_urls == 1);
    CHECK(st.inference_runs_total == 0);
    // Not one of ours (forged signature, or another host): not judged.
    auto forged = url.substr(0, url.find("&Signature=")) + "&Signature=00";
    CHECK(f.create(body_with(forged)).status() == 202);
    CHECK(f.create(body_with("https://storage.example/a.tar?Expires=1&ExpiresMs=1000"))
            .status()
          == 202);
    CHECK(f.server.snapshot().expired_signed_urls == 1);
  }
  SECTION("valid: accepted; the advertised expiry is the exact one rounded down") {
    emu::options opts;
    opts.archive_url_ttl = std::chrono::milliseconds{3'600'500};
    fixture f{opts};
    auto url = signed_url(f);
    CHECK(f.create_keyed(body_with(url), "valid-1").status() == 202);
    auto ms_at = url.find("ExpiresMs=");
    REQUIRE(ms_at != std::string::npos);
    auto ms = std::stoll(url.substr(ms_at + 10));
    auto s_at = url.find("Expires=");
    CHECK(std::stoll(url.substr(s_at + 8)) == ms / 1000);
    CHECK(f.server.snapshot().expired_signed_urls == 0);
  }
}

TEST_CASE("emulator stats JSON carries the new counters") {
  fixture f;
  auto o = json::parse(f.server.stats_json()).as_object();
  CHECK(o.at("expired_signed_urls") == 0);
  CHECK(o.at("request_log_dropped") == 0);
  CHECK(o.at("webhooks").as_object().at("ignored_invalid") == 0);
  CHECK(o.at("prompt_cache_keys").is_object());
  CHECK(o.at("timings").is_object());
}

// -- load -----------------------------------------------------------------------------------------

TEST_CASE("emulator handles many concurrent clients and in-flight responses") {
  emu::options opts;
  opts.latency.standard.queued = std::chrono::hours{1}; // all stay in flight
  opts.threads = 2;
  fixture f{opts};
  constexpr int threads = 8;
  constexpr int per_thread = 250;
  std::atomic<int> accepted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      sync_http c{"127.0.0.1", f.server.port()};
      for (int i = 0; i < per_thread; ++i) {
        auto body = basic_body();
        body["seed"] = t * per_thread + i;
        auto r = c.post("/v1/responses", json::serialize(body),
                        f.auth({{"Idempotency-Key",
                                 "load-" + std::to_string(t) + "-"
                                   + std::to_string(i)}}));
        if (r.ok() && r.status() == 202)
          ++accepted;
      }
    });
  for (auto& t : ts)
    t.join();
  CHECK(accepted == threads * per_thread);
  auto st = f.server.snapshot();
  CHECK(st.responses == threads * per_thread);
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.connections_accepted == threads);
}
