// Throughput of the Sail wire codec next to Boost.JSON's plain
// serialize/parse of the same bytes (the baseline). Every benchmark reports
// bytes/s of the JSON text it produces or consumes, so the MB/s columns line
// up. Figures and the command line are recorded in docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "sail_tinker/net/sail_codec.hpp"

namespace json = boost::json;

namespace {

/// Deterministic pseudo-random numbers (no <random> distribution drift
/// between library versions).
struct lcg {
  uint64_t state = 0x9e3779b97f4a7c15u;
  uint64_t next() {
    state = state * 6364136223846793005u + 1442695040888963407u;
    return state >> 33;
  }
};

sail::completer_config bench_config() {
  sail::completer_config cfg;
  cfg.model = "moonshotai/Kimi-K2.6";
  cfg.max_tokens = 4096;
  cfg.temperature = 0.7;
  cfg.top_p = 0.95;
  cfg.metadata = {{"experiment", "grpo-bench"}, {"step", "40"}};
  return cfg;
}

sail::sample_request bench_request(size_t tokens) {
  lcg rng;
  sail::sample_request req;
  req.prompt.tokens.reserve(tokens);
  for (size_t i = 0; i < tokens; ++i)
    req.prompt.tokens.push_back(static_cast<int64_t>(rng.next() % 151936));
  req.stop = sail::stop_condition::tokens({151645, 151643});
  req.prompt_cache_key = "group-0001";
  return req;
}

constexpr std::string_view bench_key = "6f1c2a4e-0000-4000-8000-00000000abcd";

/// A completed raw-token response of `tokens` tokens with logprobs, in the
/// contract's (ASSUMED) layout.
std::string completed_response(size_t tokens) {
  lcg rng;
  std::string ids;
  std::string lps;
  char buf[64];
  for (size_t i = 0; i < tokens; ++i) {
    if (i > 0) {
      ids += ',';
      lps += ',';
    }
    ids += std::to_string(rng.next() % 151936);
    // Logprobs as a server prints them: up to 17 significant digits.
    double lp = -static_cast<double>(rng.next() % 1000000) / 65536.0;
    std::snprintf(buf, sizeof(buf), "%.17g", lp);
    lps += buf;
  }
  return R"({"id":"resp_bench","object":"response","status":"completed",)"
         R"("model":"moonshotai/Kimi-K2.6","created_at":1764000000,)"
         R"("metadata":{"completion_window":"priority"},)"
         R"("output":[{"type":"message","role":"assistant","content":[)"
         R"({"type":"output_text","text":"...","token_ids":[)"
         + ids + R"(],"logprobs":[)" + lps + R"(],"stop_reason":"stop"}]}],)"
         R"("incomplete_details":null,)"
         R"("usage":{"input_tokens":32768,"output_tokens":)"
         + std::to_string(tokens) + R"(,"total_tokens":)"
         + std::to_string(32768 + tokens) + "}}";
}

// -- encode: 32k-token prompt ------------------------------------------------------

void encode_create(benchmark::State& state) {
  auto cfg = bench_config();
  auto req = bench_request(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    auto enc = sail::encode_create(cfg, req, bench_key);
    if (!enc) {
      state.SkipWithError("encode_create failed");
      return;
    }
    bytes = enc->body.size();
    benchmark::DoNotOptimize(enc->body.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["body_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(encode_create)->Arg(32768)->Name("encode_create/32k_tokens");
BENCHMARK(encode_create)->Arg(2'000'000)->Name("encode_create/2M_tokens")
  ->Unit(benchmark::kMillisecond);

// Baseline: Boost.JSON serializing the same document (already a json::value).
void baseline_serialize(benchmark::State& state) {
  auto enc = sail::encode_create(bench_config(),
                                 bench_request(static_cast<size_t>(state.range(0))),
                                 bench_key);
  auto doc = json::parse(enc->body);
  size_t bytes = 0;
  for (auto _ : state) {
    auto text = json::serialize(doc);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(baseline_serialize)->Arg(32768)->Name("baseline/json_serialize/32k_tokens");

// What a json::value-building encoder would cost: build the object (with a
// json::array of the prompt) and serialize it, every call.
void build_and_serialize(benchmark::State& state) {
  auto cfg = bench_config();
  auto req = bench_request(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    json::object body;
    body["model"] = cfg.model;
    body["input"] = ".";
    json::array prompt;
    prompt.reserve(req.prompt.tokens.size());
    for (auto t : req.prompt.tokens)
      prompt.emplace_back(t);
    body["raw_prompt_tokens"] = std::move(prompt);
    body["max_output_tokens"] = cfg.max_tokens;
    body["temperature"] = cfg.temperature;
    body["top_p"] = cfg.top_p;
    body["background"] = true;
    body["stop"] = json::array{151645, 151643};
    body["include"] = json::array{"message.output_text.logprobs"};
    body["prompt_cache_key"] = req.prompt_cache_key;
    json::object md;
    md["completion_window"] = cfg.completion_window;
    for (auto& [k, v] : cfg.metadata)
      md[k] = v;
    body["metadata"] = std::move(md);
    auto text = json::serialize(body);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(build_and_serialize)->Arg(32768)
  ->Name("baseline/json_build_and_serialize/32k_tokens");

// -- decode: 4k-token completed response with logprobs ----------------------------

void decode_result(benchmark::State& state) {
  auto body = completed_response(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto res = sail::decode_result(body);
    if (!res) {
      state.SkipWithError("decode_result failed");
      return;
    }
    benchmark::DoNotOptimize(res->tokens.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(decode_result)->Arg(4096)->Name("decode_result/4k_tokens");

// Baseline: Boost.JSON's plain parse of the same bytes (default allocator).
void baseline_parse(benchmark::State& state) {
  auto body = completed_response(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto doc = json::parse(body);
    benchmark::DoNotOptimize(&doc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(baseline_parse)->Arg(4096)->Name("baseline/json_parse/4k_tokens");

// The same parse into a monotonic arena, as decode_result does internally.
void baseline_parse_monotonic(benchmark::State& state) {
  auto body = completed_response(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    json::monotonic_resource mr;
    auto doc = json::parse(body, &mr);
    benchmark::DoNotOptimize(&doc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(baseline_parse_monotonic)->Arg(4096)
  ->Name("baseline/json_parse_monotonic/4k_tokens");

// decode_state on the same body (what a poller does on every GET).
void decode_state(benchmark::State& state) {
  auto body = completed_response(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto st = sail::decode_state(body);
    benchmark::DoNotOptimize(st->id.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(decode_state)->Arg(4096)->Name("decode_state/4k_tokens");

// -- a terminal body from the socket to the decoded result -------------------------
// What the worker does with a completed poll answer and with a completed
// webhook delivery: parsed once (parse_response, then the pre-parsed
// decoders), next to the earlier paths that parsed the same bytes again for
// every decoder (poll: decode_state + decode_result; webhook: the receiver's
// decode_state, the worker's decode_state, decode_result).

using decoded = caf::expected<sail::tokens_with_logprobs>;

/// Runs `path` (a body to its decoded sample) on a completed response of
/// range(0) tokens.
template <class Path>
void terminal_body(benchmark::State& state, Path path) {
  auto body = completed_response(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto res = path(body);
    if (!res) {
      state.SkipWithError("decode failed");
      return;
    }
    benchmark::DoNotOptimize(res->tokens.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}

decoded poll_parsed_twice(const std::string& body) {
  if (auto st = sail::decode_state(body); !st)
    return std::move(st.error());
  return sail::decode_result(body);
}

decoded poll_parsed_once(const std::string& body) {
  sail::response_arena arena;
  auto doc = sail::parse_response(body, &arena.mr);
  if (!doc)
    return std::move(doc.error());
  if (auto st = sail::decode_state(*doc, body); !st)
    return std::move(st.error());
  return sail::decode_result(*doc, body);
}

decoded webhook_parsed_thrice(const std::string& body) {
  if (auto judged = sail::decode_state(body); !judged) // the receiver
    return std::move(judged.error());
  if (auto st = sail::decode_state(body); !st) // the worker
    return std::move(st.error());
  return sail::decode_result(body); // the worker's finish
}

/// The receiver's decode_state, then the worker's decode_state and
/// decode_result, on a value that travelled (moved) from one to the other.
template <class Value>
decoded webhook_decodes(Value parsed, const json::value& (*doc)(const Value&),
                        const std::string& body) {
  if (auto judged = sail::decode_state(doc(parsed), body); !judged)
    return std::move(judged.error());
  auto delivered = std::move(parsed);
  if (auto st = sail::decode_state(doc(delivered), body); !st)
    return std::move(st.error());
  return sail::decode_result(doc(delivered), body);
}

// The receiver parses into a parsed_body (the value with its arena), which
// travels on to the worker in the delivery.
decoded webhook_parsed_once(const std::string& body) {
  auto parsed = sail::parse_body(body);
  if (!parsed)
    return std::move(parsed.error());
  using ptr = std::shared_ptr<const sail::parsed_body>;
  return webhook_decodes<ptr>(std::move(*parsed), [](const ptr& p) -> const json::value& {
    return p->doc;
  }, body);
}

// The same with the value in a reference-counted arena (make_shared_resource)
// instead of a parsed_body: every node of the value holds a count.
decoded webhook_parsed_once_counted(const std::string& body) {
  auto parsed = sail::parse_response(body,
                                     json::make_shared_resource<json::monotonic_resource>());
  if (!parsed)
    return std::move(parsed.error());
  return webhook_decodes<json::value>(std::move(*parsed), [](const json::value& v) -> const json::value& {
    return v;
  }, body);
}

BENCHMARK_CAPTURE(terminal_body, poll_twice, poll_parsed_twice)->Arg(256)->Arg(4096)
  ->Name("terminal_poll/parsed_twice");
BENCHMARK_CAPTURE(terminal_body, poll_once, poll_parsed_once)->Arg(256)->Arg(4096)
  ->Name("terminal_poll/parsed_once");
BENCHMARK_CAPTURE(terminal_body, webhook_thrice, webhook_parsed_thrice)->Arg(256)->Arg(4096)
  ->Name("terminal_webhook/parsed_thrice");
BENCHMARK_CAPTURE(terminal_body, webhook_once, webhook_parsed_once)->Arg(256)->Arg(4096)
  ->Name("terminal_webhook/parsed_once");
BENCHMARK_CAPTURE(terminal_body, webhook_once_counted, webhook_parsed_once_counted)
  ->Arg(256)->Arg(4096)->Name("terminal_webhook/parsed_once_counted_arena");

} // namespace

BENCHMARK_MAIN();
