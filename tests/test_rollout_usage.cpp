// `sail-tinker rollout` and billed usage, with real processes against
// `sail-tinker emulate` (which bills like Sail): the usage of every sample in
// the output, the journal and the summary equals what the emulator billed,
// also after a kill and a resume; prices give costs; a spending cap stops
// creating (exit 3), never lets the bill exceed it, and a rerun with a larger
// cap completes with one inference per key; a USD cap without a price sends
// nothing (exit 2).
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "sail_tinker/rollout/journal.hpp"
#include "sail_tinker/rollout/samples_file.hpp"
#include "support/cli_process.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using sail::test::process_options;
using sail::test::process_result;
using sail::test::read_file;
using sail::test::temp_dir;
namespace json = boost::json;

namespace {

constexpr const char* model = "moonshotai/Kimi-K2.6";

/// USD per 1M tokens of the model on asap: input 1, cached 0.5, output 2.
const char* prices_json = R"({"prices":[{"model":"moonshotai/Kimi-K2.6","window":"asap",)"
                          R"("input":1.0,"cached_input":0.5,"output":2.0}]})";

struct totals {
  uint64_t input = 0;
  uint64_t cached = 0;
  uint64_t output = 0;
  uint64_t samples = 0;
  double cost = 0;

  friend bool operator==(const totals& x, const totals& y) {
    return x.input == y.input && x.cached == y.cached && x.output == y.output
           && x.samples == y.samples;
  }
};

std::ostream& operator<<(std::ostream& os, const totals& x) {
  return os << "{" << x.input << " input, " << x.cached << " cached, " << x.output
            << " output, " << x.samples << " samples}";
}

void add(totals& t, const sail::sample_usage& u) {
  t.input += static_cast<uint64_t>(u.input_tokens);
  t.cached += static_cast<uint64_t>(u.cached_tokens);
  t.output += static_cast<uint64_t>(u.output_tokens);
  ++t.samples;
}

/// The usage of every sample of the output file (each must have one).
totals output_totals(const std::string& path) {
  totals t;
  auto text = read_file(path);
  size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    auto line = text.substr(pos, nl - pos);
    pos = nl + 1;
    auto v = json::parse(line);
    for (auto& s : v.at("samples").as_array()) {
      auto u = sail::rollout::parse_result_usage(json::serialize(s));
      INFO(line);
      REQUIRE(u);
      add(t, *u);
      if (auto* c = s.as_object().if_contains("cost_usd"))
        t.cost += c->to_number<double>();
    }
  }
  return t;
}

totals journal_totals(const std::string& path) {
  totals t;
  auto j = sail::rollout::journal::open(path);
  REQUIRE(j);
  REQUIRE(!(*j)->for_each_completed([&](const std::string&, const sail::rollout::sample_record& r) {
    auto u = sail::rollout::parse_result_usage(r.body);
    REQUIRE(u);
    add(t, *u);
  }));
  return t;
}

totals billed(const sail::test::emulate_process& emu) {
  auto st = emu.stats(true);
  totals t;
  t.input = st.at("billed_input_tokens").to_number<uint64_t>();
  t.cached = st.at("billed_cached_tokens").to_number<uint64_t>();
  t.output = st.at("billed_output_tokens").to_number<uint64_t>();
  t.samples = st.at("inference_runs_total").to_number<uint64_t>();
  return t;
}

double cost_of(const totals& t) {
  return (static_cast<double>(t.input - t.cached) * 1.0 + static_cast<double>(t.cached) * 0.5
          + static_cast<double>(t.output) * 2.0)
         / 1e6;
}

/// `prompts` prompts of 20 tokens sharing a 16-token prefix per prompt, n = 4.
std::string make_input(size_t prompts) {
  std::string text;
  for (size_t i = 0; i < prompts; ++i) {
    text += R"({"id":"p-)" + std::to_string(i) + R"(","n":4,"prompt":[)";
    for (size_t t = 0; t < 20; ++t)
      text += (t > 0 ? "," : "") + std::to_string((i * 13 + t * 7) % 64);
    text += "]}\n";
  }
  return text;
}

process_result run_job(const sail::test::emulate_process& emu, const temp_dir& dir,
                       std::vector<std::string> extra, const std::string& failpoint = {}) {
  std::vector<std::string> args{"rollout",    "--input",       dir.file("in.jsonl"),
                                "--output",   dir.file("out.jsonl"), "--window",
                                "asap",       "--max-tokens",  "8",
                                "--run-id",   "usage-run",     "--progress",
                                "lines",      "--model",       model};
  args.insert(args.end(), extra.begin(), extra.end());
  process_options opts;
  opts.env = emu.sail_env();
  if (!failpoint.empty())
    opts.env["SAIL_TINKER_FAILPOINT"] = failpoint;
  return sail::test::run_process(sail::test::cli_binary(), args, opts, 120s);
}

/// The summary's "usage" row: input, cached, output.
totals summary_usage(const std::string& out) {
  std::smatch m;
  std::regex row{R"(usage +(\d+) input \((\d+) cached\), (\d+) output)"};
  REQUIRE(std::regex_search(out, m, row));
  totals t;
  t.input = std::stoull(m[1]);
  t.cached = std::stoull(m[2]);
  t.output = std::stoull(m[3]);
  return t;
}

} // namespace

TEST_CASE("rollout usage: output, journal and summary equal the emulator's bill, also after "
          "a kill and resume",
          "[rollout][usage]") {
  temp_dir dir{"rollout-usage"};
  dir.write("in.jsonl", make_input(12));
  dir.write("prices.json", prices_json);
  sail::test::emulate_process emu{{"--prompt-cache-min-tokens", "8", "--latency-queued-ms", "20"}};
  auto killed = run_job(emu, dir, {"--prices", dir.file("prices.json"), "--concurrency", "4"},
                        "sample_completed:20");
  INFO(killed.out << killed.err);
  REQUIRE(killed.term_signal == SIGKILL);
  auto res = run_job(emu, dir, {"--prices", dir.file("prices.json"), "--concurrency", "4"});
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  auto bill = billed(emu);
  CHECK(bill.samples == 48); // one inference per sample
  CHECK(bill.cached > 0);    // the members of a group share their prompt
  auto out = output_totals(dir.file("out.jsonl"));
  out.samples = bill.samples;
  CHECK(out == bill);
  CHECK(out.cost == Approx(cost_of(bill)));
  auto jt = journal_totals(dir.file("out.jsonl.journal"));
  jt.samples = bill.samples;
  CHECK(jt == bill);
  // The resumed run's summary reports the whole run (journal included).
  auto sum = summary_usage(res.out);
  sum.samples = bill.samples;
  CHECK(sum == bill);
  CHECK(res.out.find("cost") != std::string::npos);
}

TEST_CASE("rollout budget: --budget-usd under a fault mix at concurrency 32 never lets the "
          "bill exceed the cap, exits 3, and a larger cap completes with one inference per key",
          "[rollout][usage][budget]") {
  temp_dir dir{"rollout-budget"};
  dir.write("in.jsonl", make_input(24));
  dir.write("prices.json", prices_json);
  sail::test::emulate_process emu{{"--fault", "status_503=0.05", "--fault",
                                   "connection_reset=0.05", "--fault", "status_429=0.05",
                                   "--retry-after", "0", "--latency-queued-ms", "10"}};
  // Worst case per sample: (20 x $1 + 8 x $2) / 1M = $0.000036; 96 samples.
  const double cap = 0.0015;
  auto first = run_job(emu, dir,
                       {"--prices", dir.file("prices.json"), "--budget-usd", "0.0015",
                        "--concurrency", "32"});
  INFO(first.out << first.err);
  REQUIRE(first.exit_code == 3);
  CHECK(first.err.find("budget reached: spent $") != std::string::npos);
  CHECK(first.err.find("run again with a larger cap to continue") != std::string::npos);
  auto bill = billed(emu);
  CHECK(cost_of(bill) <= cap);
  CHECK(bill.samples < 96);
  CHECK(bill.samples > 0);
  auto second = run_job(emu, dir,
                        {"--prices", dir.file("prices.json"), "--budget-usd", "1",
                         "--concurrency", "32"});
  INFO(second.out << second.err);
  REQUIRE(second.exit_code == 0);
  auto st = emu.stats(true);
  CHECK(st.at("inference_runs_total").to_number<uint64_t>() == 96);
  CHECK(st.at("max_runs_per_key").to_number<uint64_t>() == 1);
  auto all = billed(emu);
  auto out = output_totals(dir.file("out.jsonl"));
  out.samples = all.samples;
  CHECK(out == all);
}

TEST_CASE("rollout budget: a USD cap without a price exits 2 naming the pair, nothing sent",
          "[rollout][usage][budget]") {
  temp_dir dir{"rollout-noprice"};
  dir.write("in.jsonl", make_input(2));
  dir.write("prices.json", R"({"prices":[{"model":"other","window":"asap","input":1,)"
                           R"("cached_input":1,"output":1}]})");
  sail::test::emulate_process emu;
  auto res = run_job(emu, dir, {"--prices", dir.file("prices.json"), "--budget-usd", "1"});
  INFO(res.out << res.err);
  CHECK(res.exit_code == 2);
  CHECK(res.err.find(std::string{model} + ", window asap") != std::string::npos);
  CHECK(emu.requests_to("POST /v1/responses") == 0);
  // The synthetic mode too.
  auto synth = sail::test::run_process(
    sail::test::cli_binary(),
    {"rollout", "--groups", "2", "--group-size", "2", "--budget-usd", "1", "--window", "asap",
     "--model", model, "--progress", "off"},
    [&] {
      process_options o;
      o.env = emu.sail_env();
      return o;
    }(),
    60s);
  INFO(synth.out << synth.err);
  CHECK(synth.exit_code == 2);
  CHECK(emu.requests_to("POST /v1/responses") == 0);
}

TEST_CASE("rollout budget: --budget-tokens stops the synthetic mode with exit 3",
          "[rollout][usage][budget]") {
  sail::test::emulate_process emu;
  // Worst case per group: 4 x (16 + 8) = 96 tokens; 10 groups would need 960.
  process_options o;
  o.env = emu.sail_env();
  auto res = sail::test::run_process(
    sail::test::cli_binary(),
    {"rollout", "--groups", "10", "--group-size", "4", "--prompt-len", "16", "--max-tokens", "8",
     "--concurrency", "2", "--budget-tokens", "400", "--window", "asap", "--progress", "off"},
    o, 60s);
  INFO(res.out << res.err);
  CHECK(res.exit_code == 3);
  CHECK(res.err.find("budget reached: spent ") != std::string::npos);
  auto bill = billed(emu);
  CHECK(bill.input + bill.output <= 400);
  CHECK(bill.samples > 0);
  CHECK(bill.samples < 40);
}

TEST_CASE("report: a journal with known contents, as text, JSON and SVG", "[report][usage]") {
  temp_dir dir{"report"};
  auto path = dir.file("run.journal");
  {
    auto j = sail::rollout::journal::open(path);
    REQUIRE(j);
    REQUIRE(!(*j)->start_run({"run-known", R"({"model":"m","window":"flex"})", "00", 3}));
    sail::tokens_with_logprobs a{{1, 2}, std::nullopt, "stop", sail::sample_usage{100, 40, 2, 0}};
    sail::tokens_with_logprobs b{{1, 2, 3}, std::nullopt, "stop", sail::sample_usage{100, 0, 3, 1}};
    sail::tokens_with_logprobs c{{1}, std::nullopt, "stop"}; // usage unknown
    REQUIRE(!(*j)->record_completed("p1", 0, "k0", sail::rollout::format_result(a), 100));
    REQUIRE(!(*j)->record_completed("p1", 1, "k1", sail::rollout::format_result(b), 300));
    REQUIRE(!(*j)->record_completed("p2", 0, "k2", sail::rollout::format_result(c), 200));
    // p3's sample was accepted, then failed: the prompt is written without it.
    REQUIRE(!(*j)->record_accepted("p3", 0, "k3", "resp_3"));
    REQUIRE(!(*j)->record_written("p1"));
    REQUIRE(!(*j)->record_written("p2"));
    REQUIRE(!(*j)->record_written("p3"));
    REQUIRE(!(*j)->commit());
  }
  dir.write("prices.json", R"({"prices":[{"model":"m","window":"flex","input":1,)"
                           R"("cached_input":0.5,"output":2}]})");
  auto svg = dir.file("chart.svg");
  process_options o;
  o.env = sail::test::clean_env();
  auto res = sail::test::run_process(sail::test::cli_binary(),
                                     {"report", path, "--format", "json", "--prices",
                                      dir.file("prices.json"), "--svg", svg},
                                     o, 60s);
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  auto v = json::parse(res.out);
  CHECK(v.at("run_id") == "run-known");
  auto& rows = v.at("rows").as_array();
  REQUIRE(rows.size() == 1);
  auto& r = rows[0].as_object();
  CHECK(r.at("step") == "-");
  CHECK(r.at("window") == "flex");
  CHECK(r.at("samples").to_number<int>() == 3);
  CHECK(r.at("failures").to_number<int>() == 1);
  CHECK(r.at("usage_unknown").to_number<int>() == 1);
  CHECK(r.at("input_tokens").to_number<int>() == 200);
  CHECK(r.at("cached_tokens").to_number<int>() == 40);
  CHECK(r.at("output_tokens").to_number<int>() == 5);
  CHECK(r.at("reasoning_tokens").to_number<int>() == 1);
  // (200 - 40) x $1 + 40 x $0.5 + 5 x $2, per 1M.
  CHECK(r.at("cost_usd").to_number<double>() == Approx(190e-6));
  auto& lat = r.at("latency_ms").as_object();
  CHECK(lat.at("p50").to_number<double>() == 200);
  CHECK(lat.at("p99").to_number<double>() == 300);
  auto chart = read_file(svg);
  CHECK(chart.rfind("<svg", 0) == 0);
  CHECK(chart.find("</svg>") != std::string::npos);
  // Text: a table with the same numbers.
  auto text = sail::test::run_process(sail::test::cli_binary(), {"report", path}, o, 60s);
  INFO(text.out << text.err);
  REQUIRE(text.exit_code == 0);
  CHECK(text.out.find("run run-known") != std::string::npos);
  CHECK(text.out.find("usage unknown for 1 sample(s)") != std::string::npos);
  // A missing journal: io_error (exit 1), nothing created.
  auto missing = sail::test::run_process(sail::test::cli_binary(),
                                         {"report", dir.file("nope.journal")}, o, 60s);
  CHECK(missing.exit_code == 1);
}
