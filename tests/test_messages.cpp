// The message vocabulary: registration, binary round trips of every type,
// invariants enforced at deserialization, and the error enum.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <set>
#include <string_view>
#include <type_traits>

#include <caf/deep_to_string.hpp>
#include <caf/type_id.hpp>

#include "support/caf_fixture.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"

using namespace sail;
using sail::test::caf_fixture;

namespace {

tokens_with_logprobs sample_output() {
  return {{9906, 1917}, std::vector<double>{-0.12, -1.5}, "stop"};
}

completer_config full_config() {
  completer_config cfg;
  cfg.model = "Qwen/Qwen3-8B";
  cfg.max_tokens = 256;
  cfg.temperature = 0.7;
  cfg.top_p = 0.9;
  cfg.completion_window = "standard";
  cfg.tinker_lora_signed_url = "https://store.example/ckpt.tar?sig=abc";
  cfg.adapter_config = R"({"peft_type":"LORA","r":32})";
  cfg.tinker_lora_name = "step-40";
  cfg.metadata = {{"experiment", "grpo-1"}};
  cfg.timeout = std::chrono::seconds(30);
  cfg.voyage = sail::voyage{"v-1", std::string{"span-2"}, std::nullopt};
  cfg.request_logprobs = false;
  return cfg;
}

} // namespace

TEST_CASE("every message type has a type ID in the sail block", "[messages]") {
  STATIC_REQUIRE(caf::type_id<error_info>::value >= caf::first_custom_type_id);
  STATIC_REQUIRE(caf::has_type_id<voyage>::value);
  STATIC_REQUIRE(caf::has_type_id<model_input>::value);
  STATIC_REQUIRE(caf::has_type_id<stop_condition>::value);
  STATIC_REQUIRE(caf::has_type_id<tokens_with_logprobs>::value);
  STATIC_REQUIRE(caf::has_type_id<tinker_path>::value);
  STATIC_REQUIRE(caf::has_type_id<signed_url>::value);
  STATIC_REQUIRE(caf::has_type_id<resolve_request>::value);
  STATIC_REQUIRE(caf::has_type_id<completer_config>::value);
  STATIC_REQUIRE(caf::has_type_id<sample_request>::value);
  STATIC_REQUIRE(caf::has_type_id<sample_outcome>::value);
  STATIC_REQUIRE(caf::has_type_id<group_result>::value);
  STATIC_REQUIRE(caf::has_type_id<http_header>::value);
  STATIC_REQUIRE(caf::has_type_id<sail_job>::value);
  STATIC_REQUIRE(caf::has_type_id<completer_stats>::value);
  STATIC_REQUIRE(caf::has_type_id<completer_actor>::value);
  STATIC_REQUIRE(caf::has_type_id<sample_observer_actor>::value);
  STATIC_REQUIRE(caf::has_type_id<webhook_endpoint>::value);
  STATIC_REQUIRE(caf::has_type_id<std::vector<tokens_with_logprobs>>::value);
  STATIC_REQUIRE(caf::has_type_id<std::vector<sample_request>>::value);
  STATIC_REQUIRE(caf::has_type_id<std::vector<sample_outcome>>::value);
  STATIC_REQUIRE(caf::has_type_id<std::vector<http_header>>::value);
  CHECK(caf::id_block::sail::end - caf::id_block::sail::begin == 22);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: error_info", "[messages][roundtrip]") {
  error_info x{"bad", "temperature", 400, "{\"error\":{}}"};
  CHECK(roundtrip(x) == x);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: voyage", "[messages][roundtrip]") {
  voyage a{"v", std::nullopt, std::nullopt};
  voyage b{"v", std::string{"s"}, std::string{"a"}};
  CHECK(roundtrip(a) == a);
  CHECK(roundtrip(b) == b);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: model_input", "[messages][roundtrip]") {
  model_input x{151644, 872, 198, 0, 2147483647};
  CHECK(roundtrip(x) == x);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: stop_condition", "[messages][roundtrip]") {
  CHECK(roundtrip(stop_condition::none()) == stop_condition::none());
  CHECK(roundtrip(stop_condition::token(198))->token_ids == std::vector<int64_t>{198});
  CHECK(roundtrip(stop_condition::tokens({1, 2})) == stop_condition::tokens({1, 2}));
  CHECK(roundtrip(stop_condition::texts({"\n", "END"})) == stop_condition::texts({"\n", "END"}));
}

TEST_CASE_METHOD(caf_fixture, "stop_condition never mixes ints and strings on the wire",
                 "[messages][roundtrip]") {
  stop_condition mixed;
  mixed.token_ids = {1};
  mixed.strings = {"x"};
  CHECK(mixed.which() == stop_condition::kind::token_ids);
  CHECK(!roundtrip(mixed));
  CHECK(last_error == caf::sec::invalid_argument);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: a bare stop string, and a broken one",
                 "[messages][roundtrip]") {
  CHECK(roundtrip(stop_condition::text("END")) == stop_condition::text("END"));
  stop_condition broken;
  broken.strings = {"a", "b"};
  broken.bare_string = true;
  CHECK(!roundtrip(broken));
  CHECK(last_error == caf::sec::invalid_argument);
}

TEST_CASE("signed URLs: one refresh schedule from one margin", "[messages][resolver]") {
  using namespace std::chrono;
  auto now = caf::make_timestamp();
  signed_url url{"https://store.example/a?sig=x", now + minutes(15), {}, {}};
  auto s = with_refresh_schedule(url, minutes(2), now);
  CHECK(s.refresh_at == url.expires - minutes(4));
  CHECK(s.use_until == url.expires - minutes(2));
  // Shorter than four margins: refreshed halfway, unused in the last quarter.
  url.expires = now + seconds(4);
  s = with_refresh_schedule(url, minutes(2), now);
  CHECK(s.refresh_at == now + seconds(2));
  CHECK(s.use_until == now + seconds(3));
  // Already expired: due at once, never usable.
  url.expires = now - seconds(1);
  s = with_refresh_schedule(url, minutes(2), now);
  CHECK(s.refresh_at == url.expires);
  CHECK(s.use_until == url.expires);
}

TEST_CASE("a single int stop becomes a one-element list", "[messages]") {
  auto s = stop_condition::token(42);
  CHECK(s.which() == stop_condition::kind::token_ids);
  CHECK(s.token_ids == std::vector<int64_t>{42});
  // A bare string stays a string (the seed passes it through unchanged); a
  // list of one string stays a list.
  auto t = stop_condition::text("END");
  CHECK(t.which() == stop_condition::kind::text);
  CHECK(t.strings == std::vector<std::string>{"END"});
  CHECK(stop_condition::texts({"END"}).which() == stop_condition::kind::strings);
  CHECK(t != stop_condition::texts({"END"}));
  CHECK(stop_condition::none().which() == stop_condition::kind::none);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: tokens_with_logprobs",
                 "[messages][roundtrip]") {
  auto x = sample_output();
  CHECK(roundtrip(x) == x);
  tokens_with_logprobs no_lp{{1, 2, 3}, std::nullopt, "length"};
  CHECK(roundtrip(no_lp) == no_lp);
  // Usage crosses a link as is; unknown stays unknown (never 0).
  auto billed = sample_output();
  billed.usage = sample_usage{120, 64, 2, 1};
  CHECK(roundtrip(billed) == billed);
  auto back = roundtrip(no_lp);
  REQUIRE(back);
  CHECK(back->usage == std::nullopt);
}

TEST_CASE_METHOD(caf_fixture, "negative usage or cached over input never crosses a link",
                 "[messages][roundtrip]") {
  std::vector<char> buf;
  auto negative = sample_output();
  negative.usage = sample_usage{-1, 0, 2, 0};
  CHECK(save(negative, buf) == caf::sec::invalid_argument);
  auto cached = sample_output();
  cached.usage = sample_usage{4, 5, 2, 0};
  CHECK(save(cached, buf) == caf::sec::invalid_argument);
  // The same values written field by field, as a peer that skips the check
  // would send them: loading refuses them.
  std::vector<char> raw;
  caf::binary_serializer sink{sys, raw};
  int64_t in = 4, ca = 5, out = 2, re = 0;
  REQUIRE(!sink(in, ca, out, re));
  sample_usage u;
  caf::binary_deserializer source{sys, raw};
  CHECK(source(u) == caf::sec::invalid_argument);
}

TEST_CASE_METHOD(caf_fixture, "non-finite or mismatched logprobs never cross a link",
                 "[messages][roundtrip]") {
  auto nan = sample_output();
  nan.maybe_logprobs->at(0) = std::numeric_limits<double>::quiet_NaN();
  std::vector<char> buf;
  CHECK(save(nan, buf) == caf::sec::invalid_argument);
  auto inf = sample_output();
  inf.maybe_logprobs->at(1) = -std::numeric_limits<double>::infinity();
  CHECK(save(inf, buf) == caf::sec::invalid_argument);
  auto mismatch = sample_output();
  mismatch.maybe_logprobs->pop_back();
  CHECK(save(mismatch, buf) == caf::sec::invalid_argument);
}

TEST_CASE("logprobs accessor yields a typed error when absent", "[messages]") {
  CHECK(*sample_output().logprobs() == std::vector<double>{-0.12, -1.5});
  tokens_with_logprobs none{{1}, std::nullopt, "stop"};
  auto lp = none.logprobs();
  REQUIRE(!lp);
  CHECK(code_of(lp.error()) == errc::invalid_argument);
  CHECK(info_of(lp.error())->field == "maybe_logprobs");
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: tinker_path, signed_url, resolve_request",
                 "[messages][roundtrip]") {
  tinker_path p{"0f1e:train:0", "sampler_weights", "step-40"};
  CHECK(roundtrip(p) == p);
  CHECK(p.checkpoint_id() == "sampler_weights/step-40");
  signed_url u{"https://store.example/a.tar?sig=s3cr3t",
               caf::timestamp{std::chrono::seconds(1764000000)}};
  CHECK(roundtrip(u) == u);
  resolve_request r{p, int64_t{3600}};
  CHECK(roundtrip(r) == r);
  resolve_request no_ttl{p, std::nullopt};
  CHECK(roundtrip(no_ttl) == no_ttl);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: completer_config", "[messages][roundtrip]") {
  auto cfg = full_config();
  CHECK(roundtrip(cfg) == cfg);
  completer_config minimal;
  minimal.model = "m";
  minimal.max_tokens = 1;
  CHECK(roundtrip(minimal) == minimal);
}

TEST_CASE_METHOD(caf_fixture, "a non-finite temperature or top_p never reaches a link",
                 "[messages][roundtrip]") {
  std::vector<char> buf;
  auto cfg = full_config();
  cfg.temperature = std::numeric_limits<double>::infinity();
  CHECK(save(cfg, buf) == caf::sec::invalid_argument);
  cfg = full_config();
  cfg.top_p = std::numeric_limits<double>::quiet_NaN();
  CHECK(save(cfg, buf) == caf::sec::invalid_argument);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: sample_request", "[messages][roundtrip]") {
  sample_request r{{1, 2, 3}, stop_condition::texts({"\n"}), int64_t{64}, "key-1",
                   "group-1", "cache-1", std::nullopt, "", {}, ""};
  CHECK(roundtrip(r) == r);
  sample_request plain{{7}, {}, std::nullopt, "", "", "", std::nullopt, "", {}, ""};
  CHECK(roundtrip(plain) == plain);
  // A pre-encoded body (a durable run's) travels byte for byte.
  auto encoded = r;
  encoded.body = "{\"model\":\"m\",\"input\":[]}";
  CHECK(roundtrip(encoded) == encoded);
  CHECK(roundtrip(encoded) != r);
  // A pinned webhook travels whole (token included) and prints redacted.
  auto pinned = r;
  pinned.webhook = webhook_endpoint{"https://hooks.example.com/a", "whk_0123456789abcdef0123"};
  CHECK(roundtrip(pinned) == pinned);
  auto none = r;
  none.webhook = webhook_endpoint{};
  CHECK(roundtrip(none) == none);
  CHECK(roundtrip(none) != r);
  auto shown = caf::deep_to_string(pinned);
  CHECK(shown.find("https://hooks.example.com/a") != std::string::npos);
  CHECK(shown.find("whk_0123456789abcdef0123") == std::string::npos);
  CHECK(shown.find("0123456789abcdef") == std::string::npos);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: sample_request attaching a response id "
                              "with an observer, and sample_observer_actor",
                 "[messages][roundtrip]") {
  auto obs = sys.spawn([](int) -> sample_observer_actor::behavior_type {
    return {[](atom::accepted, std::string&, std::string&) {}};
  }, 0);
  sample_request r{{1, 2}, {},        std::nullopt, "st1-abc", "sg1-def",
                   "sg1-def", std::nullopt, "resp_42",      obs, ""};
  auto back = roundtrip(r);
  REQUIRE(back);
  CHECK(*back == r);
  CHECK(back->response_id == "resp_42");
  CHECK(back->observer == obs);
  auto handle = roundtrip(obs);
  REQUIRE(handle);
  CHECK(*handle == obs);
  sail_job j{"k", "{}", {}, "asap", "g", "m", false, caf::timespan{0}, caf::timespan{0},
             caf::make_timestamp(), "resp_42", obs};
  CHECK(roundtrip(j) == j);
  self->send_exit(obs, caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: sample_outcome and group_result",
                 "[messages][roundtrip]") {
  sample_outcome ok{sample_output(), caf::error{}};
  sample_outcome failed{std::nullopt, http_error(503, "busy")};
  auto r1 = roundtrip(ok);
  REQUIRE(r1);
  CHECK(*r1 == ok);
  auto r2 = roundtrip(failed);
  REQUIRE(r2);
  CHECK(code_of(r2->error) == errc::http_error);
  CHECK(info_of(r2->error)->http_status == 503);
  group_result g{"g", {ok, failed}};
  auto r3 = roundtrip(g);
  REQUIRE(r3);
  CHECK(r3->members.size() == 2);
  CHECK(r3->members[0] == ok);
  CHECK(info_of(r3->members[1].error)->body == "busy");
}

TEST_CASE_METHOD(caf_fixture, "a sample_outcome holds exactly one of result and error",
                 "[messages][roundtrip]") {
  // Found by fuzz/caf_message_fuzz: a peer could send a group member with
  // neither (a failure without an error) or both.
  sample_outcome neither{std::nullopt, caf::error{}};
  CHECK(!roundtrip(neither));
  CHECK(last_error == caf::sec::invalid_argument);
  sample_outcome both{sample_output(), http_error(503, "busy")};
  CHECK(!roundtrip(both));
  CHECK(last_error == caf::sec::invalid_argument);
  // The same bytes written field by field (flag, [result], error), as a
  // peer that skips the check would send them: loading refuses them, also
  // inside a group_result.
  auto load_outcome = [this](bool with_result, const caf::error& err) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    auto twl = sample_output();
    auto e = err;
    REQUIRE(!(with_result ? sink(uint8_t{1}, twl, e) : sink(uint8_t{0}, e)));
    sample_outcome out;
    caf::binary_deserializer source{sys, buf};
    auto res = source(out);
    std::vector<char> group_buf;
    caf::binary_serializer group_sink{sys, group_buf};
    std::string gid = "g";
    REQUIRE(!group_sink(gid, uint8_t{1}));  // group id, one member
    group_buf.insert(group_buf.end(), buf.begin(), buf.end());
    group_result g;
    caf::binary_deserializer group_source{sys, group_buf};
    CHECK(group_source(g) == res);
    return res;
  };
  CHECK(load_outcome(false, caf::error{}) == caf::sec::invalid_argument);
  CHECK(load_outcome(true, http_error(503, "busy")) == caf::sec::invalid_argument);
  CHECK(!load_outcome(true, caf::error{}));
  CHECK(!load_outcome(false, http_error(503, "busy")));
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: http_header, sail_job, completer_stats",
                 "[messages][roundtrip]") {
  http_header h{"Idempotency-Key", "k"};
  CHECK(roundtrip(h) == h);
  sail_job j{"k", "{}", {h}, "priority", "g", "model-m", true, std::chrono::seconds(5),
             std::chrono::minutes(10), {}, "", {}};
  CHECK(roundtrip(j) == j);
  retry_guard_stats g{"open", 2, 1500, 3, 40, 5, 100, 60, 110, 7};
  pool_stats p{{{"http_503", 2}}, 42, {{"applied", 4}}, g,
               {{1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 42}, {{5}, 17}};
  completer_stats s{3, 10, {{"timeout", 1}}, {}, p};
  usage_entry(s.usage, "m", "flex").add(sample_usage{10, 4, 2, 0});
  usage_entry(s.usage, "m", "asap").add(std::nullopt);
  CHECK(s.usage.front().window == "asap"); // sorted by (model, window)
  CHECK(roundtrip(s) == s);
  // merge_into adds usage per (model, window).
  completer_stats sum;
  merge_into(sum, s);
  merge_into(sum, s);
  REQUIRE(sum.usage.size() == 2);
  CHECK(sum.usage[1].samples == 2);
  CHECK(sum.usage[1].input_tokens == 20);
  CHECK(sum.usage[1].cached_tokens == 8);
  CHECK(sum.usage[0].unknown == 2);
  // An unsorted (or repeated) usage list from a peer is refused.
  auto unsorted = s;
  std::swap(unsorted.usage[0], unsorted.usage[1]);
  std::vector<char> out;
  CHECK(save(unsorted, out) == caf::sec::invalid_argument);
  CHECK(roundtrip(s)->pool.guard.breaker == "open");
  // A histogram longer than its buckets is refused on load.
  completer_stats bad = s;
  bad.pool.notice_delay.counts.assign(notice_buckets_ms.size() + 2, 1);
  std::vector<char> buf;
  CHECK(save(bad, buf) == caf::sec::invalid_argument);
}

TEST_CASE("completer_stats: histograms count into their buckets and merge",
          "[messages]") {
  completer_stats a;
  auto& h = a.pool.polls_per_sample;
  h.observe(polls_buckets, 0);
  h.observe(polls_buckets, 5);    // (4, 6]
  h.observe(polls_buckets, 1000); // beyond the last bound
  REQUIRE(h.counts.size() == polls_buckets.size() + 1);
  CHECK(h.counts[0] == 1);
  CHECK(h.counts[5] == 1);
  CHECK(h.counts.back() == 1);
  CHECK(h.count() == 3);
  CHECK(h.sum == 1005);
  completer_stats b;
  b.completed = 2;
  b.pool.webhooks["applied"] = 3;
  b.pool.polls_per_sample.observe(polls_buckets, 0);
  b.pool.notice_delay.observe(notice_buckets_ms, 9);
  b.pool.guard.probes = 1;
  b.pool.guard.breaker = "half_open";
  b.pool.guard.next_probe_ms = 700;
  merge_into(a, b);
  merge_into(a, b);
  CHECK(a.completed == 4);
  CHECK(a.pool.webhooks.at("applied") == 6);
  CHECK(a.pool.polls_per_sample.counts[0] == 3);
  CHECK(a.pool.notice_delay.sum == 18);
  CHECK(a.pool.notice_delay.count() == 2);
  CHECK(a.pool.guard.probes == 2);
  // The worst state and the soonest probe, not sums.
  CHECK(a.pool.guard.breaker == "half_open");
  CHECK(a.pool.guard.next_probe_ms == 700);
}

namespace {

/// Gives every described field of x a value that is not its default
/// (`n` counts the fields, so that each gets its own value).
template <class T>
void fill_every_field(T& x, uint64_t& n) {
  for_each_stat(x, [&](const stat_info& info, auto& v) {
    using V = std::decay_t<decltype(v)>;
    ++n;
    if constexpr (described_stats<V>) {
      fill_every_field(v, n);
    } else if constexpr (std::is_same_v<V, std::string>) {
      v = info.kind == stat_kind::state ? std::string{info.known.back()} : "label";
    } else if constexpr (std::is_same_v<V, std::map<std::string, uint64_t>>) {
      v["x"] = n;
    } else if constexpr (std::is_same_v<V, histogram>) {
      v.observe(info.bounds, static_cast<double>(n));
    } else if constexpr (std::is_same_v<V, std::vector<usage_totals>>) {
      fill_every_field(usage_entry(v, "m", "w"), n);
    } else {
      v = static_cast<V>(n);
    }
  });
}

/// Checks that `sum` holds `x` merged twice into empty stats, field by field.
template <class T>
void check_merged_twice(const T& sum, const T& x) {
  for_each_stat(sum, x, [&](const stat_info& info, const auto& s, const auto& v) {
    using V = std::decay_t<decltype(v)>;
    INFO("field " << info.key);
    if constexpr (described_stats<V>) {
      check_merged_twice(s, v);
    } else if constexpr (std::is_same_v<V, std::string>) {
      CHECK(s == v);
    } else if constexpr (std::is_same_v<V, std::map<std::string, uint64_t>>) {
      REQUIRE(s.size() == 1);
      CHECK(s.at("x") == 2 * v.at("x"));
    } else if constexpr (std::is_same_v<V, histogram>) {
      CHECK(s.count() == 2 * v.count());
      CHECK(s.sum == 2 * v.sum);
    } else if constexpr (std::is_same_v<V, std::vector<usage_totals>>) {
      REQUIRE(s.size() == 1);
      check_merged_twice(s[0], v[0]);
    } else if (info.kind == stat_kind::soonest) {
      CHECK(s == v);
    } else {
      CHECK(s == 2 * v);
    }
  });
}

} // namespace

TEST_CASE_METHOD(caf_fixture, "completer_stats: every described field crosses the wire and "
                              "merges",
                 "[messages][roundtrip]") {
  // A field added to a stats struct and its description (messages/types.hpp)
  // is serialised and merged without another edit.
  completer_stats x;
  uint64_t n = 0;
  fill_every_field(x, n);
  CHECK(n > 20);
  CHECK(roundtrip(x) == x);
  completer_stats sum;
  merge_into(sum, x);
  merge_into(sum, x);
  check_merged_twice(sum, x);
  // Every field has a key, and every exported one a help text on its
  // metric's first field.
  std::set<std::string_view> helped;
  auto walk = [&](auto& self, const auto& stats) -> void {
    for_each_stat(stats, [&](const stat_info& info, const auto& v) {
      using V = std::decay_t<decltype(v)>;
      CHECK(!info.key.empty());
      if (!info.help.empty())
        helped.insert(info.metric);
      else if (!info.metric.empty())
        CHECK(helped.count(info.metric) == 1);
      if constexpr (described_stats<V>)
        self(self, v);
      else if constexpr (std::is_same_v<V, std::vector<usage_totals>>)
        self(self, v.front());
    });
  };
  walk(walk, x);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: vectors of message types",
                 "[messages][roundtrip]") {
  std::vector<tokens_with_logprobs> xs{sample_output(), sample_output()};
  CHECK(roundtrip(xs) == xs);
  std::vector<sample_request> rs{
    {{1}, {}, std::nullopt, "a", "", "", std::nullopt, "", {}, ""}};
  CHECK(roundtrip(rs) == rs);
  std::vector<http_header> hs{{"a", "b"}};
  CHECK(roundtrip(hs) == hs);
  std::vector<sample_outcome> os{{sample_output(), caf::error{}}};
  CHECK(roundtrip(os) == os);
}

TEST_CASE_METHOD(caf_fixture, "binary round trip: completer_actor handle",
                 "[messages][roundtrip]") {
  // At least one spawn argument: CAF 0.17.6 dereferences a null argument
  // tuple for argument-less function actors.
  auto c = sys.spawn([](int) -> completer_actor::behavior_type {
    return {
      [](atom::sample, sample_request&) -> tokens_with_logprobs { return {}; },
      [](atom::sample_group, sample_request&, uint32_t) -> group_result { return {}; },
      [](atom::cancel, std::string&) {},
      [](atom::stats) -> completer_stats { return {}; },
    };
  }, 0);
  auto back = roundtrip(c);
  REQUIRE(back);
  CHECK(*back == c);
  self->send_exit(c, caf::exit_reason::user_shutdown);
}

TEST_CASE("secrets are redacted in stringified messages", "[messages][secrets]") {
  auto cfg = full_config();
  auto text = caf::deep_to_string(cfg);
  CHECK(text.find("sig=abc") == std::string::npos);
  CHECK(text.find("store.example/ckpt.tar") != std::string::npos);
  signed_url u{"https://store.example/a.tar?X-Amz-Signature=s3cr3t", {}};
  CHECK(caf::deep_to_string(u).find("s3cr3t") == std::string::npos);
}

// -- errors -------------------------------------------------------------------------

TEST_CASE("the error enum names every kind", "[errors]") {
  for (auto [code, name] : std::vector<std::pair<errc, std::string>>{
         {errc::invalid_argument, "invalid_argument"},
         {errc::inference_error, "inference_error"},
         {errc::http_error, "http_error"},
         {errc::timeout, "timeout"},
         {errc::overloaded, "overloaded"},
         {errc::transport_error, "transport_error"},
         {errc::cancelled, "cancelled"},
         {errc::not_configured, "not_configured"},
         {errc::node_down, "node_down"},
         {errc::io_error, "io_error"},
         {errc::unavailable, "unavailable"},
         {errc::budget_exceeded, "budget_exceeded"}}) {
    CHECK(to_string(code) == name);
    CHECK(parse_errc(name) == code);
  }
  CHECK(parse_errc("nope") == std::nullopt);
  CHECK(std::string{to_string(static_cast<errc>(0))} == "unknown");
}

TEST_CASE("sail errors compare by code and carry their context", "[errors]") {
  auto err = http_error(429, R"({"error":{"message":"slow down"}})");
  CHECK(err == errc::http_error);
  CHECK(err != errc::timeout);
  CHECK(err.category() == caf::atom("sail"));
  CHECK(code_of(err) == errc::http_error);
  REQUIRE(info_of(err) != nullptr);
  CHECK(info_of(err)->http_status == 429);
  CHECK(info_of(err)->body == R"({"error":{"message":"slow down"}})");
  CHECK(code_of(caf::make_error(caf::sec::request_timeout)) == std::nullopt);
  CHECK(info_of(caf::make_error(caf::sec::request_timeout)) == nullptr);
}

TEST_CASE_METHOD(caf_fixture, "the renderer registered with CAF prints kind and context",
                 "[errors]") {
  auto err = invalid_argument("temperature", "temperature must be within [0, 2]");
  CHECK(sys.render(err)
        == "invalid_argument: temperature must be within [0, 2] [field=temperature]");
  CHECK(render(err) == sys.render(err));
  auto http = http_error(503, "busy");
  CHECK(sys.render(http) == "http_error: HTTP status 503 [status=503] [body=busy]");
}

TEST_CASE_METHOD(caf_fixture, "errors survive a binary round trip with their context",
                 "[errors][roundtrip]") {
  auto err = inference_error("missing output_text", R"({"output":[]})");
  auto back = roundtrip(err);
  REQUIRE(back);
  CHECK(*back == errc::inference_error);
  REQUIRE(info_of(*back) != nullptr);
  CHECK(*info_of(*back) == *info_of(err));
}

TEST_CASE("error bodies and messages have secrets redacted", "[errors][secrets]") {
  auto err = http_error(401, "bad key sk_live_0123456789abcdef and "
                             "Authorization: Bearer abc.def.ghi; "
                             "url https://s3.example/x.tar?X-Amz-Signature=deadbeef");
  auto body = info_of(err)->body;
  CHECK(body.find("sk_live_0123456789abcdef") == std::string::npos);
  CHECK(body.find("abc.def.ghi") == std::string::npos);
  CHECK(body.find("deadbeef") == std::string::npos);
  CHECK(body.find("https://s3.example/x.tar") != std::string::npos);
  auto tml = make_error(errc::not_configured, "key tml-abcdefghijklmnop rejected");
  CHECK(info_of(tml)->message.find("tml-abcdefghijklmnop") == std::string::npos);
}

TEST_CASE("redact_url keeps scheme, host and path only", "[secrets]") {
  CHECK(redact_url("https://user:pw@host.example:8443/a/b?sig=1#frag")
        == "https://host.example:8443/a/b?[REDACTED]");
  CHECK(redact_url("https://host.example/a") == "https://host.example/a");
  // Found by fuzz/tinker_response_fuzz: a "://" inside the query of a
  // relative or malformed URL was taken for the scheme separator and the
  // query before it was kept.
  CHECK(redact_url("/a.tar?sig=SECRET&next=http://x") == "/a.tar?[REDACTED]");
  CHECK(redact_url("https:/h/p?sig=SECRET&u=http://GMT") == "https:/h/p?[REDACTED]");
  CHECK(redact_url("host.example?sig=SECRET://x") == "host.example?[REDACTED]");
  CHECK(redact_url("https://h.example/p?next=https://x") == "https://h.example/p?[REDACTED]");
  CHECK(redact_secrets("plain text stays") == "plain text stays");
  CHECK(redact_secrets("skeleton sk_ and tml-x stay") == "skeleton sk_ and tml-x stay");
}
