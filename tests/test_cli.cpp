// The sail-tinker executable, run as a subprocess against `sail-tinker
// emulate` (also a subprocess): exit-code rules, every flag of `sample`,
// --help of every subcommand, emulate's listening line and clean SIGTERM,
// resolve's outputs, configuration through CAF, and a rollout against
// `serve` whose /metrics is parsed as Prometheus text format.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "sail_tinker/emulator/emulator.hpp"
#include "support/certs_cluster.hpp"
#include "support/paths.hpp"
#include "support/cli_process.hpp"
#include "support/process.hpp"
#include "support/sync_http.hpp"

using namespace std::chrono_literals;
using sail::test::process_options;
using sail::test::process_result;
using sail::test::subprocess;

namespace {

using sail::test::clean_env;
using sail::test::env_map;

std::string binary() {
  return sail::test::cli_binary();
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos)
      nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

process_result cli(const std::vector<std::string>& args, env_map env = clean_env(),
                   std::string cwd = {}) {
  process_options opts;
  opts.env = std::move(env);
  opts.cwd = std::move(cwd);
  auto res = sail::test::run_process(binary(), args, opts, 90s);
  INFO("args[0]: " << (args.empty() ? "" : args[0]));
  INFO("stdout: " << res.out);
  INFO("stderr: " << res.err);
  REQUIRE_FALSE(res.timed_out);
  REQUIRE(res.exited);
  return res;
}

/// `sail-tinker emulate` as a subprocess.
struct emulate_process : sail::test::emulate_process {
  using sail::test::emulate_process::emulate_process;

  /// POST /v1/responses requests seen so far (any status).
  uint64_t creates() const {
    return requests_to("POST /v1/responses");
  }
};

std::vector<std::string> sample_args(std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"sample", "--model", "Qwen/Qwen3-8B", "--max-tokens", "6",
                                "--prompt", "5,6,7,8"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

struct sample_output {
  std::vector<int64_t> tokens;
  std::optional<std::vector<double>> logprobs;
  std::string stop_reason;
};

/// Checks the "exactly one JSON object" rule and decodes it.
sample_output parse_sample(const process_result& res) {
  INFO("stdout: " << res.out << "\nstderr: " << res.err);
  REQUIRE(res.exit_code == 0);
  auto lines = lines_of(res.out);
  REQUIRE(lines.size() == 1);
  auto doc = boost::json::parse(lines[0]);
  REQUIRE(doc.is_object());
  auto& obj = doc.as_object();
  REQUIRE(obj.size() == 3);
  sample_output out;
  for (auto& t : obj.at("tokens").as_array())
    out.tokens.push_back(t.as_int64());
  auto& lp = obj.at("maybe_logprobs");
  if (!lp.is_null()) {
    std::vector<double> xs;
    for (auto& x : lp.as_array())
      xs.push_back(x.to_number<double>());
    out.logprobs = xs;
  }
  out.stop_reason = obj.at("stop_reason").as_string().c_str();
  return out;
}

/// Exit 2, stderr starts with "error: invalid_argument:" and names `field`.
void require_invalid(const process_result& res, const std::string& field) {
  INFO("stdout: " << res.out << "\nstderr: " << res.err);
  CHECK(res.exit_code == 2);
  CHECK(starts_with(res.err, "error: invalid_argument:"));
  auto lines = lines_of(res.err);
  REQUIRE(!lines.empty());
  CHECK(contains(lines.front(), field));
  CHECK(res.out.empty());
}

/// Exit 1 and stderr starts with "error: <kind>:".
void require_failure(const process_result& res, const std::string& kind) {
  INFO("stdout: " << res.out << "\nstderr: " << res.err);
  CHECK(res.exit_code == 1);
  CHECK(starts_with(res.err, "error: " + kind + ":"));
  CHECK(res.out.empty());
}

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/sail-tinker-cli-XXXXXX";
    auto* p = mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream out{path / name};
    out << text;
  }
};

// -- a small strict parser of the Prometheus text format (0.0.4) ------------------

struct prom_sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct prom_doc {
  std::map<std::string, std::string> types;
  std::set<std::string> helps;
  std::vector<prom_sample> samples;

  std::vector<const prom_sample*> find(const std::string& name) const {
    std::vector<const prom_sample*> out;
    for (auto& s : samples)
      if (s.name == name)
        out.push_back(&s);
    return out;
  }
};

bool valid_metric_name(const std::string& n) {
  static const std::regex re{R"(^[a-zA-Z_:][a-zA-Z0-9_:]*$)"};
  return std::regex_match(n, re);
}

double parse_prom_value(const std::string& v) {
  if (v == "+Inf")
    return INFINITY;
  if (v == "-Inf")
    return -INFINITY;
  if (v == "NaN")
    return NAN;
  size_t used = 0;
  double d = std::stod(v, &used);
  REQUIRE(used == v.size());
  return d;
}

/// Family of a sample name: histograms' _bucket/_sum/_count map to the base.
std::string family_of(const prom_doc& doc, const std::string& name) {
  for (auto suffix : {"_bucket", "_sum", "_count"}) {
    std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      auto base = name.substr(0, name.size() - s.size());
      auto i = doc.types.find(base);
      if (i != doc.types.end() && (i->second == "histogram" || i->second == "summary"))
        return base;
    }
  }
  return name;
}

prom_doc parse_prometheus(const std::string& text) {
  prom_doc doc;
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  std::set<std::string> seen_families;
  for (auto& line : lines_of(text)) {
    INFO("line: " << line);
    REQUIRE(!line.empty());
    if (line[0] == '#') {
      std::smatch m;
      static const std::regex help{R"(^# HELP ([^ ]+) (.*)$)"};
      static const std::regex type{R"(^# TYPE ([^ ]+) (counter|gauge|histogram|summary|untyped)$)"};
      if (std::regex_match(line, m, help)) {
        REQUIRE(valid_metric_name(m[1]));
        REQUIRE(doc.helps.insert(m[1]).second);  // one HELP per family
      } else if (std::regex_match(line, m, type)) {
        REQUIRE(valid_metric_name(m[1]));
        REQUIRE(doc.types.count(m[1]) == 0);      // one TYPE per family
        REQUIRE(seen_families.count(m[1]) == 0);  // TYPE before its samples
        doc.types[m[1]] = m[2];
      } else {
        REQUIRE(starts_with(line, "# "));  // a plain comment
      }
      continue;
    }
    prom_sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ')
      ++i;
    s.name = line.substr(0, i);
    REQUIRE(valid_metric_name(s.name));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        REQUIRE(i < line.size());
        if (line[i] == '}') {
          ++i;
          break;
        }
        auto eq = line.find('=', i);
        REQUIRE(eq != std::string::npos);
        auto lname = line.substr(i, eq - i);
        static const std::regex label_re{R"(^[a-zA-Z_][a-zA-Z0-9_]*$)"};
        REQUIRE(std::regex_match(lname, label_re));
        i = eq + 1;
        REQUIRE(line[i] == '"');
        ++i;
        std::string value;
        while (true) {
          REQUIRE(i < line.size());
          char c = line[i++];
          if (c == '"')
            break;
          if (c == '\\') {
            REQUIRE(i < line.size());
            char e = line[i++];
            REQUIRE((e == '\\' || e == '"' || e == 'n'));
            value += e == 'n' ? '\n' : e;
          } else {
            value += c;
          }
        }
        REQUIRE(s.labels.emplace(lname, value).second);
        REQUIRE(i < line.size());
        if (line[i] == ',')
          ++i;
        else
          REQUIRE(line[i] == '}');
      }
    }
    REQUIRE(i < line.size());
    REQUIRE(line[i] == ' ');
    auto rest = line.substr(i + 1);
    auto sp = rest.find(' ');
    s.value = parse_prom_value(rest.substr(0, sp));
    if (sp != std::string::npos) {
      auto ts = rest.substr(sp + 1);
      REQUIRE(std::regex_match(ts, std::regex{R"(^-?\d+$)"}));
    }
    auto family = family_of(doc, s.name);
    REQUIRE(doc.types.count(family) == 1);  // every sample belongs to a typed family
    seen_families.insert(family);
    doc.samples.push_back(std::move(s));
  }
  // Histograms: per label set, buckets ascending in le, counts monotone,
  // a +Inf bucket equal to _count, and a _sum.
  for (auto& [family, type] : doc.types) {
    if (type != "histogram")
      continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
    for (auto* b : doc.find(family + "_bucket")) {
      auto labels = b->labels;
      REQUIRE(labels.count("le") == 1);
      auto le = parse_prom_value(labels["le"]);
      labels.erase("le");
      buckets[labels].emplace_back(le, b->value);
    }
    REQUIRE(!buckets.empty());
    for (auto& [labels, bs] : buckets) {
      for (size_t k = 1; k < bs.size(); ++k) {
        REQUIRE(bs[k - 1].first < bs[k].first);
        REQUIRE(bs[k - 1].second <= bs[k].second);
      }
      REQUIRE(std::isinf(bs.back().first));
      std::optional<double> count;
      std::optional<double> sum;
      for (auto* c : doc.find(family + "_count"))
        if (c->labels == labels)
          count = c->value;
      for (auto* c : doc.find(family + "_sum"))
        if (c->labels == labels)
          sum = c->value;
      REQUIRE(count);
      REQUIRE(sum);
      REQUIRE(bs.back().second == *count);
    }
  }
  return doc;
}

} // namespace

// -- top level -------------------------------------------------------------------------

TEST_CASE("cli: --version, top-level help, unknown command", "[cli]") {
  auto v = cli({"--version"});
  CHECK(v.exit_code == 0);
  CHECK(starts_with(v.out, "sail-tinker 0.1.0"));
  auto h = cli({"--help"});
  CHECK(h.exit_code == 0);
  for (auto cmd : {"sample", "resolve", "emulate", "serve", "rollout"})
    CHECK(contains(h.out, cmd));
  auto none = cli({});
  CHECK(none.exit_code == 2);
  auto bad = cli({"frobnicate"});
  CHECK(bad.exit_code == 2);
  CHECK(starts_with(bad.err, "error: invalid_argument:"));
}

TEST_CASE("cli: --help of every subcommand lists its flags", "[cli]") {
  const std::map<std::string, std::vector<std::string>> flags{
    {"sample",
     {"--model", "--max-tokens", "--prompt", "--stop-token", "--stop", "--temperature",
      "--top-p", "--window", "--lora", "--tinker-lora-signed-url", "--adapter-config",
      "--tinker-lora-name", "--metadata", "--no-logprobs", "--timeout", "--voyage-id",
      "--base-url", "--log-level", "--log-format"}},
    {"resolve", {"TINKER_PATH", "--ttl-seconds", "--base-url"}},
    {"emulate",
     {"--host", "--port", "--api-key", "--tinker-api-key", "--fault", "--fault-seed",
      "--retry-after", "--latency-queued-ms", "--latency-per-token-us", "--archive-mode",
      "--still-building", "--status-vocabulary", "--model-windows", "--request-log",
      "--archive-url-ttl-ms", "--webhook-timeout-ms", "balanced", "emulator_outcome"}},
    {"serve", {"--host", "--port", "--metrics-port", "--base-url", "openssl.certificate",
       "--insecure-plaintext"}},
    {"rollout",
     {"--base-url", "--groups", "--group-size", "--prompt-len", "--max-tokens", "--window",
      "--concurrency", "--nodes"}},
  };
  for (auto& [cmd, expected] : flags) {
    for (auto help : {"--help", "-h"}) {
      auto res = cli({cmd, help});
      INFO(cmd << " " << help << "\n" << res.out);
      CHECK(res.exit_code == 0);
      CHECK(starts_with(res.out, "usage: sail-tinker " + cmd));
      for (auto& f : expected)
        CHECK(contains(res.out, f));
      CHECK(res.err.empty());
    }
  }
}

// -- emulate ---------------------------------------------------------------------------------

TEST_CASE("cli: emulate prints its listening line first and stops on SIGTERM", "[cli]") {
  process_options opts;
  opts.env = clean_env();
  subprocess proc{binary(), {"emulate", "--port", "0"}, opts};
  auto line = proc.wait_for_line("listening on ", 30s);
  REQUIRE(line);
  CHECK(std::regex_match(*line, std::regex{R"(^listening on http://127\.0\.0\.1:\d+$)"}));
  CHECK(starts_with(proc.out(), "listening on http://"));  // the very first line
  proc.signal(SIGTERM);
  auto res = proc.wait(30s);
  CHECK_FALSE(res.timed_out);
  CHECK(res.exited);
  CHECK(res.exit_code == 0);
}

TEST_CASE("cli: emulate stops on SIGINT too, invalid emulate flags exit 2", "[cli]") {
  process_options opts;
  opts.env = clean_env();
  subprocess proc{binary(), {"emulate", "--fault", "status_503=0.5", "--fault-seed", "3",
                             "--retry-after", "2", "--latency-queued-ms", "1",
                             "--latency-per-token-us", "10", "--archive-mode", "json",
                             "--still-building", "1", "--api-key", "sk_other",
                             "--tinker-api-key", "tml-other"},
                  opts};
  REQUIRE(proc.wait_for_line("listening on ", 30s));
  proc.signal(SIGINT);
  auto res = proc.wait(30s);
  CHECK(res.exited);
  CHECK(res.exit_code == 0);
  require_invalid(cli({"emulate", "--fault", "bogus=0.1"}), "fault");
  require_invalid(cli({"emulate", "--fault", "status_503=2"}), "fault");
  require_invalid(cli({"emulate", "--port", "70000"}), "port");
  require_invalid(cli({"emulate", "--archive-mode", "zip"}), "archive-mode");
  require_invalid(cli({"emulate", "--latency-queued-ms", "x"}), "latency-queued-ms");
}

TEST_CASE("cli: emulate fidelity flags: vocabulary, model windows, request log, outcomes",
          "[cli]") {
  emulate_process emu{{"--status-vocabulary", "openapi", "--request-log", "100", "--model-windows",
                       "vendor/narrow=priority,flex", "--webhook-timeout-ms", "1000",
                       "--archive-url-ttl-ms", "5000"}};
  auto narrow = [](std::vector<std::string> extra) {
    std::vector<std::string> args{"sample", "--model", "vendor/narrow", "--max-tokens", "4",
                                  "--prompt", "1,2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  auto ok = parse_sample(cli(narrow({"--window", "priority"}), emu.sail_env()));
  CHECK(ok.tokens.size() == 4);
  // A window the (emulated) model does not support: the server's 400, typed.
  auto refused = cli(narrow({"--window", "standard"}), emu.sail_env());
  require_failure(refused, "http_error");
  CHECK(contains(refused.err, "not supported"));
  // emulator_outcome through --metadata: a failed response is an inference_error.
  require_failure(cli(narrow({"--window", "priority", "--metadata", "emulator_outcome=failed"}),
                      emu.sail_env()),
                  "inference_error");
  // The request log: the openapi vocabulary's words were served.
  sail::test::sync_http http{"127.0.0.1", emu.port};
  auto log = http.get("/_emulator/requests").json();
  REQUIRE(log.is_array());
  bool pending = false;
  for (auto& e : log.as_array()) {
    auto body = std::string{e.as_object().at("response_body").as_string()};
    pending = pending || contains(body, R"("status":"pending")");
    CHECK_FALSE(contains(body, R"("status":"queued")"));
  }
  CHECK(pending);
  CHECK(log.as_array().size() >= 3);
  require_invalid(cli({"emulate", "--status-vocabulary", "xml"}), "status-vocabulary");
  require_invalid(cli({"emulate", "--model-windows", "no-equals"}), "model-windows");
  require_invalid(cli({"emulate", "--model-windows", "m=priority,someday"}), "model-windows");
  require_invalid(cli({"emulate", "--request-log", "-1"}), "request-log");
  require_invalid(cli({"emulate", "--webhook-timeout-ms", "0"}), "webhook-timeout-ms");
}

// -- sample ------------------------------------------------------------------------------------

TEST_CASE("cli: sample prints exactly one JSON object", "[cli][sample]") {
  emulate_process emu;
  auto out = parse_sample(cli(sample_args(), emu.sail_env()));
  CHECK(out.tokens.size() == 6);
  REQUIRE(out.logprobs);
  CHECK(out.logprobs->size() == 6);
  CHECK(out.stop_reason == "length");
  // --no-logprobs -> null. Each run sends its own Idempotency-Key, which the
  // toy model mixes into its sample; greedy sampling (temperature 0) does
  // not depend on it, so the two greedy runs must agree.
  auto greedy = parse_sample(cli(sample_args({"--temperature", "0"}), emu.sail_env()));
  REQUIRE(greedy.logprobs);
  auto no_lp = parse_sample(cli(sample_args({"--temperature", "0", "--no-logprobs"}),
                                emu.sail_env()));
  CHECK_FALSE(no_lp.logprobs);
  CHECK(no_lp.tokens == greedy.tokens);
}

TEST_CASE("cli: sample stop flags", "[cli][sample]") {
  emulate_process emu;
  auto base = parse_sample(cli(sample_args({"--temperature", "0"}), emu.sail_env()));
  REQUIRE(base.tokens.size() == 6);
  // --stop-token: generation ends at the first occurrence, token included.
  auto stop_id = base.tokens[2];
  auto stopped = parse_sample(
    cli(sample_args({"--temperature", "0", "--stop-token", std::to_string(stop_id),
                     "--stop-token", "63"}),
        emu.sail_env()));
  CHECK(stopped.stop_reason == "stop");
  REQUIRE(!stopped.tokens.empty());
  CHECK(stopped.tokens.back() == stop_id);
  CHECK(stopped.tokens.size() <= 3);
  // --stop TEXT (repeatable).
  auto text = sail::emulator::vocabulary().at(static_cast<size_t>(base.tokens[1]));
  auto by_text = parse_sample(
    cli(sample_args({"--temperature", "0", "--stop", text, "--stop", "never-seen-text"}),
        emu.sail_env()));
  CHECK(by_text.stop_reason == "stop");
  CHECK(by_text.tokens.size() <= 2);
  // Mixing ints and strings -> invalid_argument, nothing sent.
  auto before = emu.creates();
  require_invalid(cli(sample_args({"--stop-token", "1", "--stop", "x"}), emu.sail_env()), "stop");
  require_invalid(cli(sample_args({"--stop-token", "x"}), emu.sail_env()), "stop-token");
  require_invalid(cli(sample_args({"--stop-token", "-1"}), emu.sail_env()), "stop");
  require_invalid(cli(sample_args({"--stop", ""}), emu.sail_env()), "stop");
  CHECK(emu.creates() == before);
}

TEST_CASE("cli: sample sampling and window flags", "[cli][sample]") {
  emulate_process emu;
  // Two runs send two Idempotency-Keys: independent samples (the toy model
  // mixes the key in), each with the requested length.
  auto a = parse_sample(cli(sample_args({"--temperature", "0.5", "--top-p", "0.9"}),
                            emu.sail_env()));
  auto b = parse_sample(cli(sample_args({"--temperature", "0.5", "--top-p", "0.9"}),
                            emu.sail_env()));
  CHECK(a.tokens.size() == 6);
  CHECK(b.tokens.size() == 6);
  REQUIRE(a.logprobs);
  for (auto lp : *a.logprobs)
    CHECK(lp <= 0.0);
  for (auto w : {"asap", "priority", "balanced", "standard", "flex"}) {
    auto res = parse_sample(cli(sample_args({"--window", w}), emu.sail_env()));
    CHECK(res.tokens.size() == 6);
  }
  parse_sample(cli(sample_args({"--timeout", "30", "--voyage-id", "voyage-1",
                                "--metadata", "team=rl", "--metadata", "run=7"}),
                   emu.sail_env()));
  auto before = emu.creates();
  require_invalid(cli(sample_args({"--temperature", "3"}), emu.sail_env()), "temperature");
  require_invalid(cli(sample_args({"--temperature", "hot"}), emu.sail_env()), "temperature");
  require_invalid(cli(sample_args({"--top-p", "1.5"}), emu.sail_env()), "top_p");
  require_invalid(cli(sample_args({"--timeout", "0"}), emu.sail_env()), "timeout");
  require_invalid(cli(sample_args({"--timeout", "soon"}), emu.sail_env()), "timeout");
  require_invalid(cli(sample_args({"--metadata", "novalue"}), emu.sail_env()), "metadata");
  require_invalid(cli(sample_args({"--metadata", "lora=x"}), emu.sail_env()), "metadata");
  require_invalid(cli(sample_args({"--voyage-id", ""}), emu.sail_env()), "voyage");
  CHECK(emu.creates() == before);
  // A window name nobody configured goes to the server, which judges it (its
  // 400 comes back typed, body attached): window names changed three times
  // in 2026 (/completion-windows).
  auto res = cli(sample_args({"--window", "someday"}), emu.sail_env());
  require_failure(res, "http_error");
  CHECK(contains(res.err, "status=400"));
  CHECK(contains(res.err, "completion_window"));
}

TEST_CASE("cli: Kimi-K2.6 serves LoRAs on priority, asap is refused with Sail's message",
          "[cli][sample][facts]") {
  // FACT (/loras): LoRA serving is documented for moonshotai/Kimi-K2.6.
  emulate_process emu;
  auto kimi = [](std::vector<std::string> extra) {
    std::vector<std::string> args{"sample", "--model", "moonshotai/Kimi-K2.6",
                                  "--max-tokens", "6", "--prompt", "5,6,7,8",
                                  "--lora", "emulator-lora"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  auto out = parse_sample(cli(kimi({"--window", "priority"}), emu.sail_env()));
  CHECK(out.tokens.size() == 6);
  CHECK(emu.creates() == 1);
  parse_sample(cli(kimi({"--window", "balanced"}), emu.sail_env()));
  CHECK(emu.creates() == 2);
  // FACT (/completion-windows, live error text): LoRA requests cannot use
  // asap. Refused before anything is sent, with the server's own words.
  auto res = cli(kimi({"--window", "asap"}), emu.sail_env());
  require_invalid(res, "completion_window");
  CHECK(contains(res.err, "lora requests cannot use completion_window=asap"));
  CHECK(emu.creates() == 2);
}

TEST_CASE("cli: an unknown model is the server's call, a configured table checks locally",
          "[cli][sample][facts]") {
  emulate_process emu;
  std::vector<std::string> unknown{"sample", "--model", "example/not-in-any-table",
                                   "--max-tokens", "4", "--prompt", "1,2",
                                   "--window", "balanced", "--lora", "emulator-lora"};
  // Not documented anywhere, so nothing is refused locally: the request goes.
  parse_sample(cli(unknown, emu.sail_env()));
  CHECK(emu.creates() == 1);
  // A deployment's own table (sail.model-table) restricts windows and LoRA.
  temp_dir dir;
  dir.write("models.json", R"({"models": {
      "example/not-in-any-table": {"windows": ["priority", "flex"], "lora": false},
      "example/windows-only": {"windows": ["balanced"]}}})");
  auto table = "--sail.model-table=" + (dir.path / "models.json").string();
  auto args = unknown;
  args.push_back(table);
  require_invalid(cli(args, emu.sail_env()), "completion_window");
  auto lora_args = std::vector<std::string>{"sample", "--model", "example/not-in-any-table",
                                            "--max-tokens", "4", "--prompt", "1,2",
                                            "--window", "priority", "--lora", "emulator-lora",
                                            table};
  require_invalid(cli(lora_args, emu.sail_env()), "lora");
  CHECK(emu.creates() == 1);
  parse_sample(cli({"sample", "--model", "example/windows-only", "--max-tokens", "4",
                    "--prompt", "1,2", "--window", "balanced", table},
                   emu.sail_env()));
  CHECK(emu.creates() == 2);
}

TEST_CASE("cli: --adapter-config takes a JSON object or a string holding one",
          "[cli][sample][facts]") {
  emulate_process emu{{"--request-log", "100"}};
  auto args = [](std::string adapter) {
    return sample_args({"--window", "priority", "--tinker-lora-signed-url",
                        "https://storage.example/ckpt.tar?sig=abc", "--adapter-config",
                        std::move(adapter)});
  };
  parse_sample(cli(args(R"({"r":32,"peft_type":"LORA"})"), emu.sail_env()));
  parse_sample(cli(args(R"("{\"r\":32,\"peft_type\":\"LORA\"}")"), emu.sail_env()));
  CHECK(emu.creates() == 2);
  // Both forms go out as the same canonical JSON text in a string.
  sail::test::sync_http http{"127.0.0.1", emu.port};
  auto log = http.get("/_emulator/requests").json();
  size_t creates = 0;
  for (auto& e : log.as_array()) {
    auto& entry = e.as_object();
    if (entry.at("route") != "POST /v1/responses")
      continue;
    ++creates;
    auto body = boost::json::parse(entry.at("request_body").as_string());
    CHECK(body.at("metadata").at("adapter_config") == R"({"r":32,"peft_type":"LORA"})");
  }
  CHECK(creates == 2);
  require_invalid(cli(args(R"("[1,2]")"), emu.sail_env()), "adapter_config");
  require_invalid(cli(args(R"("not json")"), emu.sail_env()), "adapter_config");
  require_invalid(cli(args("[1,2]"), emu.sail_env()), "adapter_config");
  CHECK(emu.creates() == 2);
}

TEST_CASE("cli: the Sail endpoint from SAIL_BASE_URL, SAIL_API_URL or SAIL_MODE",
          "[cli][sample][facts]") {
  emulate_process emu;
  // OpenAI-compatible clients are configured with ".../v1" (/quickstart).
  auto env = emu.sail_env();
  env["SAIL_BASE_URL"] = emu.url + "/v1";
  parse_sample(cli(sample_args(), env));
  env["SAIL_BASE_URL"] = emu.url + "/v1/";
  parse_sample(cli(sample_args(), env));
  parse_sample(cli(sample_args({"--base-url", emu.url + "/v1"}), emu.sail_env()));
  // Sail's SDK: SAIL_API_URL overrides the host (no /v1).
  env = emu.sail_env();
  env["SAIL_BASE_URL"] = std::nullopt;
  env["SAIL_API_URL"] = emu.url;
  parse_sample(cli(sample_args(), env));
  CHECK(emu.creates() == 4);
  // SAIL_BASE_URL (this project's own) wins over SAIL_API_URL.
  env["SAIL_BASE_URL"] = emu.url;
  env["SAIL_API_URL"] = "http://127.0.0.1:1";
  parse_sample(cli(sample_args(), env));
  CHECK(emu.creates() == 5);
  // SAIL_MODE: the SDK's hosts; an unknown mode is invalid_argument.
  env = emu.sail_env();
  env["SAIL_BASE_URL"] = std::nullopt;
  env["SAIL_MODE"] = "production";
  require_invalid(cli(sample_args(), env), "SAIL_MODE");
  env["SAIL_MODE"] = "local";
  auto res = cli(sample_args({"--log-level", "debug", "--pool.retry-max-attempts=1"}), env);
  CHECK(contains(res.err, "base_url=http://localhost:8080"));
  CHECK(emu.creates() == 5);
  env["SAIL_MODE"] = std::nullopt;
  env["SAIL_API_URL"] = "ftp://example.com";
  require_invalid(cli(sample_args(), env), "SAIL_API_URL");
}

TEST_CASE("cli: sample LoRA flags", "[cli][sample]") {
  emulate_process emu;
  parse_sample(cli(sample_args({"--lora", "emulator-lora"}), emu.sail_env()));
  parse_sample(cli(sample_args({"--tinker-lora-signed-url",
                                "https://storage.example/ckpt.tar?sig=abc",
                                "--adapter-config", R"({"rank":8})", "--tinker-lora-name",
                                "my-lora"}),
                   emu.sail_env()));
  auto before = emu.creates();
  require_invalid(cli(sample_args({"--lora", "a", "--tinker-lora-signed-url",
                                   "https://x.example/a?s=1", "--adapter-config", "{}"}),
                      emu.sail_env()),
                  "lora");
  require_invalid(cli(sample_args({"--tinker-lora-signed-url", "https://x.example/a?s=1"}),
                      emu.sail_env()),
                  "adapter_config");
  require_invalid(cli(sample_args({"--tinker-lora-signed-url", "https://x.example/a?s=1",
                                   "--adapter-config", "not json"}),
                      emu.sail_env()),
                  "adapter_config");
  require_invalid(cli(sample_args({"--lora", "emulator-lora", "--window", "asap"}),
                      emu.sail_env()),
                  "completion_window");
  CHECK(emu.creates() == before);
  // An unknown LoRA is the server's call: http_error with the body attached.
  auto res = cli(sample_args({"--lora", "no-such-lora"}), emu.sail_env());
  require_failure(res, "http_error");
  CHECK(contains(res.err, "lora not found"));
}

TEST_CASE("cli: sample argument errors exit 2 and send nothing", "[cli][sample]") {
  emulate_process emu;
  auto env = emu.sail_env();
  auto before = emu.creates();
  require_invalid(cli({"sample", "--max-tokens", "4", "--prompt", "1"}, env), "model");
  require_invalid(cli({"sample", "--model", "m", "--prompt", "1"}, env), "max-tokens");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "4"}, env), "prompt");
  require_invalid(cli(sample_args({"--bogus"}), env), "bogus");
  require_invalid(cli(sample_args({"-x"}), env), "x");
  require_invalid(cli(sample_args({"stray"}), env), "arguments");
  require_invalid(cli(sample_args({"--model"}), env), "model");
  require_invalid(cli(sample_args({"--no-logprobs=yes"}), env), "no-logprobs");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "abc", "--prompt", "1"}, env),
                  "max-tokens");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "0", "--prompt", "1"}, env),
                  "max_tokens");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "4", "--prompt", "1,two,3"}, env),
                  "prompt");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "4", "--prompt", "1.5"}, env),
                  "prompt");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "4", "--prompt", ""}, env),
                  "prompt");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "4", "--prompt", "1,-2"}, env),
                  "prompt");
  require_invalid(cli({"sample", "--model", "m", "--max-tokens", "4", "--prompt",
                       "1,2147483648"},
                      env),
                  "prompt");
  require_invalid(cli({"sample", "--model", "", "--max-tokens", "4", "--prompt", "1"}, env),
                  "model");
  require_invalid(cli(sample_args({"--base-url", "not a url"}), env), "base-url");
  require_invalid(cli(sample_args({"--log-level", "loud"}), env), "log-level");
  require_invalid(cli(sample_args({"--log-format", "xml"}), env), "log-format");
  // Configuration: unknown keys and ill-typed values.
  require_invalid(cli(sample_args({"--pool.workers=abc"}), env), "pool.workers");
  require_invalid(cli(sample_args({"--pool.no-such-key=1"}), env), "pool.no-such-key");
  require_invalid(cli(sample_args({"--completer.group-policy=sometimes"}), env),
                  "completer.group-policy");
  require_invalid(cli(sample_args({"--sail.io-threads=0"}), env), "sail.io-threads");
  require_invalid(cli(sample_args({"--pool.retry-budget-ratio=-1"}), env),
                  "pool.retry-budget-ratio");
  require_invalid(cli(sample_args({"--pool.breaker-failure-ratio=1.5"}), env),
                  "pool.breaker-failure-ratio");
  require_invalid(cli(sample_args({"--pool.breaker-open-delay=1min"}), env),
                  "pool.breaker-open-delay");
  require_invalid(cli(sample_args({"--pool.adaptive-polls=0"}), env), "pool.adaptive-polls");
  require_invalid(cli(sample_args({"--pool.adaptive-max-gap-factor=0.5"}), env),
                  "pool.adaptive-max-gap-factor");
  // Values out of range: the options structs' validate(), naming the key.
  require_invalid(cli(sample_args({"--pool.max-in-flight=0"}), env), "pool.max-in-flight");
  require_invalid(cli(sample_args({"--pool.poll-jitter=1.0"}), env), "pool.poll-jitter");
  require_invalid(cli(sample_args({"--pool.webhook-poll=-1s"}), env), "pool.webhook-poll");
  require_invalid(cli(sample_args({"--http.read-timeout=0s"}), env), "http.read-timeout");
  require_invalid(cli(sample_args({"--resolver.max-attempts=0"}), env), "resolver.max-attempts");
  // Beyond the field's type (uint32): ill-typed, also named.
  require_invalid(cli(sample_args({"--pool.max-dispatch-attempts=4294967296"}), env),
                  "pool.max-dispatch-attempts");
  CHECK(emu.creates() == before);
}

TEST_CASE("cli: sample configuration from caf-application.ini and --config-file", "[cli][sample]") {
  emulate_process emu;
  temp_dir dir;
  dir.write("caf-application.ini", "[pool]\nworkers=2\nretry-max-attempts=3\n"
                                   "[http]\nconnect-timeout=5s\n[log]\nlevel=\"error\"\n");
  parse_sample(cli(sample_args(), emu.sail_env(), dir.path.string()));
  dir.write("bad.ini", "[pool]\nworkers=\"many\"\n");
  require_invalid(cli(sample_args({"--config-file=" + (dir.path / "bad.ini").string()}),
                      emu.sail_env()),
                  "pool.workers");
  dir.write("unknown.ini", "[pool]\nwrokers=2\n");
  require_invalid(cli(sample_args({"--config-file", (dir.path / "unknown.ini").string()}),
                      emu.sail_env()),
                  "pool.wrokers");
  // Values out of range in caf-application.ini, or in --config-file: refused,
  // naming the key, before anything is sent.
  auto before = emu.creates();
  dir.write("caf-application.ini", "[pool]\nworkers=2\nadaptive-polls=0\n");
  require_invalid(cli(sample_args(), emu.sail_env(), dir.path.string()), "pool.adaptive-polls");
  dir.write("range.ini", "[completer]\nmax-group-size=0\n");
  require_invalid(cli(sample_args({"--config-file=" + (dir.path / "range.ini").string()}),
                      emu.sail_env()),
                  "completer.max-group-size");
  dir.write("range.ini", "[pool]\nmax-dispatch-attempts=4294967296\n");
  require_invalid(cli(sample_args({"--config-file=" + (dir.path / "range.ini").string()}),
                      emu.sail_env()),
                  "pool.max-dispatch-attempts");
  CHECK(emu.creates() == before);
  // The CLI wins over the file.
  dir.write("caf-application.ini", "[log]\nlevel=\"bogus\"\n");
  parse_sample(cli(sample_args({"--log-level", "warn"}), emu.sail_env(), dir.path.string()));
}

TEST_CASE("cli: sample --base-url overrides SAIL_BASE_URL", "[cli][sample]") {
  emulate_process emu;
  auto env = emu.sail_env();
  env["SAIL_BASE_URL"] = "http://127.0.0.1:1";
  parse_sample(cli(sample_args({"--base-url", emu.url}), env));
  // Without the override the bogus endpoint is used: a transport error, exit 1.
  auto res = cli(sample_args({"--pool.retry-max-attempts=1"}), env);
  require_failure(res, "transport_error");
}

TEST_CASE("cli: sample runtime errors exit 1 with the kind, body and no secret", "[cli][sample]") {
  emulate_process emu;
  // No API key: not_configured.
  auto env = emu.sail_env();
  env.erase("SAIL_API_KEY");
  env["SAIL_API_KEY"] = std::nullopt;
  require_failure(cli(sample_args(), env), "not_configured");
  // A wrong key: 401 with the body; the key itself never shows.
  env["SAIL_API_KEY"] = "sk_live_secret_123456789";
  auto res = cli(sample_args(), env);
  require_failure(res, "http_error");
  CHECK(contains(res.err, "401"));
  CHECK(contains(res.err, "invalid_api_key"));
  CHECK_FALSE(contains(res.err, "secret_123456789"));
  // With debug logs the error line comes last; still no secret anywhere.
  auto debug = cli(sample_args({"--log-level", "debug"}), env);
  CHECK(debug.exit_code == 1);
  CHECK(starts_with(lines_of(debug.err).back(), "error: http_error:"));
  CHECK_FALSE(contains(debug.err, "secret_123456789"));
  // A signed URL's query string never shows either.
  auto res2 = cli(sample_args({"--tinker-lora-signed-url",
                               "https://storage.example/c.tar?Signature=topsecretsig",
                               "--adapter-config", "{}", "--log-level", "debug"}),
                  env);
  CHECK(res2.exit_code == 1);
  CHECK_FALSE(contains(res2.err, "topsecretsig"));
}

TEST_CASE("cli: sample maps server faults to error kinds", "[cli][sample]") {
  {
    emulate_process emu{{"--fault", "malformed_json=1", "--fault-routes", "poll"}};
    auto res = cli(sample_args({"--pool.retry-max-attempts=1"}), emu.sail_env());
    require_failure(res, "inference_error");
    CHECK(contains(res.err, "body="));
  }
  {
    emulate_process emu{{"--fault", "status_500=1", "--fault-routes", "create",
                         "--after-accept-fraction", "0"}};
    auto res = cli(sample_args(), emu.sail_env());
    require_failure(res, "http_error");
    CHECK(contains(res.err, "500"));
  }
}

TEST_CASE("cli: JSON logs on stderr with --log-format=json", "[cli][sample]") {
  emulate_process emu;
  auto res = cli(sample_args({"--log-format=json", "--log-level=debug"}), emu.sail_env());
  parse_sample(res);
  auto lines = lines_of(res.err);
  REQUIRE(!lines.empty());
  for (auto& l : lines) {
    INFO(l);
    auto doc = boost::json::parse(l);
    REQUIRE(doc.is_object());
    CHECK(doc.as_object().contains("level"));
    CHECK(doc.as_object().contains("msg"));
  }
  CHECK_FALSE(contains(res.err, "sk_emulator_key"));
}

// -- resolve -------------------------------------------------------------------------------------

TEST_CASE("cli: resolve prints the URL on stdout and the expiry on stderr", "[cli][resolve]") {
  emulate_process emu;
  auto res = cli({"resolve", "tinker://run-1/weights/step-10"}, emu.tinker_env());
  INFO(res.err);
  REQUIRE(res.exit_code == 0);
  auto out = lines_of(res.out);
  REQUIRE(out.size() == 1);
  CHECK(starts_with(out[0], emu.url + "/_emulator/archive/"));
  auto err = lines_of(res.err);
  REQUIRE(err.size() == 1);
  CHECK(std::regex_match(err[0], std::regex{R"(^expires: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$)"}));
  auto ttl = cli({"resolve", "tinker://run-1/sampler_weights/s", "--ttl-seconds", "3600"},
                 emu.tinker_env());
  CHECK(ttl.exit_code == 0);
  // --base-url overrides TINKER_BASE_URL.
  auto env = emu.tinker_env();
  env["TINKER_BASE_URL"] = "http://127.0.0.1:1";
  CHECK(cli({"resolve", "tinker://r/weights/n", "--base-url", emu.url}, env).exit_code == 0);
}

TEST_CASE("cli: resolve exit codes", "[cli][resolve]") {
  emulate_process emu;
  auto env = emu.tinker_env();
  require_invalid(cli({"resolve"}, env), "tinker_path");
  require_invalid(cli({"resolve", "s3://bucket/x"}, env), "tinker_path");
  require_invalid(cli({"resolve", "tinker://r/bogus_kind/n"}, env), "tinker_path");
  require_invalid(cli({"resolve", "tinker://r/weights/n", "--ttl-seconds", "0"}, env),
                  "ttl-seconds");
  require_invalid(cli({"resolve", "tinker://r/weights/n", "--ttl-seconds", "x"}, env),
                  "ttl-seconds");
  require_invalid(cli({"resolve", "tinker://r/weights/n", "--base-url", "ftp://x"}, env),
                  "base-url");
  require_invalid(cli({"resolve", "tinker://r/weights/n", "extra"}, env), "arguments");
  auto bad_key = env;
  bad_key["TINKER_API_KEY"] = "not-a-key";
  require_invalid(cli({"resolve", "tinker://r/weights/n"}, bad_key), "TINKER_API_KEY");
  auto no_key = env;
  no_key["TINKER_API_KEY"] = std::nullopt;
  require_failure(cli({"resolve", "tinker://r/weights/n"}, no_key), "not_configured");
  auto wrong = env;
  wrong["TINKER_API_KEY"] = "tml-wrong-key-0123456789";
  auto res = cli({"resolve", "tinker://r/weights/n"}, wrong);
  require_failure(res, "http_error");
  CHECK_FALSE(contains(res.err, "wrong-key-0123456789"));
}

// -- rollout and serve -----------------------------------------------------------------------

TEST_CASE("cli: rollout on the embedded emulator prints progress and a summary", "[cli][rollout]") {
  auto res = cli({"rollout", "--emulator", "--groups", "3", "--group-size", "2",
                  "--prompt-len", "4", "--max-tokens", "4", "--concurrency", "2", "--window",
                  "asap", "--emu-latency-queued-ms", "1"});
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  CHECK(contains(res.out, "progress: 6/6 samples"));
  CHECK(contains(res.out, "6 ok, 0 failed, of 6"));
  CHECK(contains(res.out, "tokens              24"));
  CHECK(contains(res.out, "group latency"));
  CHECK(contains(res.out, "p99"));
  CHECK(contains(res.out, "retries by cause"));
  CHECK(contains(res.out, "errors by kind      none"));
  CHECK(contains(res.out, "6 for 6 Idempotency-Keys, max 1 per key"));
  require_invalid(cli({"rollout", "--emulator", "--groups", "0"}), "groups");
  require_invalid(cli({"rollout", "--nodes", "nohostport"}), "nodes");
  require_invalid(cli({"rollout", "--emulator", "--progress", "fancy"}), "progress");
  require_invalid(cli({"rollout", "--emulator", "--base-url", "http://127.0.0.1:9"}),
                  "emulator");
}

TEST_CASE("cli: rollout without SAIL_API_KEY, --base-url, --nodes or --emulator exits 2 "
          "naming SAIL_API_KEY, nothing sent",
          "[cli][rollout]") {
  // Synthetic mode and file mode alike; nothing starts (stdout stays empty:
  // no progress, no summary) and the rollout run creates no output or journal.
  auto synthetic = cli({"rollout", "--groups", "1"});
  require_invalid(synthetic, "SAIL_API_KEY");
  CHECK(contains(synthetic.err, "--emulator"));
  temp_dir dir;
  dir.write("in.jsonl", "{\"id\":\"a\",\"prompt\":[1,2,3]}\n");
  auto out = dir.path / "out.jsonl";
  require_invalid(cli({"rollout", "--input", (dir.path / "in.jsonl").string(), "--output",
                       out.string()}),
                  "SAIL_API_KEY");
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out.string() + ".journal"));
}

TEST_CASE("cli: rollout against serve, then /metrics parses as Prometheus text", "[cli][serve]") {
  emulate_process emu;
  process_options sopts;
  sopts.env = emu.sail_env();
  subprocess serve{binary(), {"serve", "--port", "0", "--metrics-port", "0"}, sopts};
  auto caf_line = serve.wait_for_line("listening on caf://", 30s);
  INFO(serve.err());
  REQUIRE(caf_line);
  auto metrics_line = serve.wait_for_line("listening on http://", 30s);
  REQUIRE(metrics_line);
  std::smatch m;
  REQUIRE(std::regex_match(*caf_line, m, std::regex{R"(^listening on caf://127\.0\.0\.1:(\d+)$)"}));
  auto node_port = m[1].str();
  REQUIRE(std::regex_match(*metrics_line, m,
                           std::regex{R"(^listening on http://127\.0\.0\.1:(\d+)/metrics$)"}));
  auto metrics_port = static_cast<uint16_t>(std::stoi(m[1].str()));

  auto res = cli({"rollout", "--nodes", "127.0.0.1:" + node_port, "--groups", "4",
                  "--group-size", "3", "--prompt-len", "8", "--max-tokens", "8",
                  "--concurrency", "2", "--window", "asap"});
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  CHECK(contains(res.out, "target 1 service node(s)"));
  CHECK(contains(res.out, "12 ok, 0 failed, of 12"));
  CHECK(contains(res.out, "127.0.0.1:" + node_port + " ready, 12 ok, 0 failed, 0 re-routed"));
  CHECK(contains(res.out, "n/a (not on the embedded emulator)"));
  // The node validates the trainer's configuration: a rejected one fails
  // the run typed, naming the field, and sends nothing to Sail.
  auto rejected = cli({"rollout", "--nodes", "127.0.0.1:" + node_port, "--groups", "1",
                       "--temperature", "7", "--cluster.connect-timeout=2s"});
  INFO(rejected.out << rejected.err);
  CHECK(rejected.exit_code != 0);
  CHECK(contains(rejected.err, "temperature"));

  sail::test::sync_http http{"127.0.0.1", metrics_port};
  auto scrape = http.get("/metrics");
  REQUIRE(scrape.ok());
  CHECK(scrape.status() == 200);
  CHECK(starts_with(scrape.header("Content-Type"), "text/plain; version=0.0.4"));
  INFO(scrape.body());
  auto doc = parse_prometheus(scrape.body());
  CHECK(doc.types.at("sail_tinker_samples_in_flight") == "gauge");
  CHECK(doc.types.at("sail_tinker_samples_completed_total") == "counter");
  CHECK(doc.types.at("sail_tinker_samples_failed_total") == "counter");
  CHECK(doc.types.at("sail_tinker_retries_total") == "counter");
  CHECK(doc.types.at("sail_tinker_polls_total") == "counter");
  CHECK(doc.types.at("sail_tinker_request_latency_seconds") == "histogram");
  REQUIRE(doc.find("sail_tinker_samples_completed_total").size() == 1);
  CHECK(doc.find("sail_tinker_samples_completed_total")[0]->value == 12);
  CHECK(doc.find("sail_tinker_samples_in_flight")[0]->value == 0);
  CHECK(doc.find("sail_tinker_polls_total")[0]->value >= 12);
  // Billed usage by model, window and kind equals what the emulator billed.
  CHECK(doc.types.at("sail_tinker_usage_tokens_total") == "counter");
  CHECK(doc.types.at("sail_tinker_usage_samples_total") == "counter");
  {
    auto bill = emu.stats(true);
    std::map<std::string, double> tokens;
    for (auto* s : doc.find("sail_tinker_usage_tokens_total")) {
      CHECK(s->labels.at("model") == "moonshotai/Kimi-K2.6");
      CHECK(s->labels.at("window") == "asap");
      tokens[s->labels.at("kind")] += s->value;
    }
    CHECK(tokens["input"] == bill.at("billed_input_tokens").to_number<double>());
    CHECK(tokens["cached"] == bill.at("billed_cached_tokens").to_number<double>());
    CHECK(tokens["output"] == bill.at("billed_output_tokens").to_number<double>());
    CHECK(tokens["input"] == 12 * 8);
    std::map<std::string, double> samples;
    for (auto* s : doc.find("sail_tinker_usage_samples_total"))
      samples[s->labels.at("usage")] += s->value;
    CHECK(samples["known"] == 12);
    CHECK(samples["unknown"] == 0);
  }
  // The retry budget and the circuit breaker (closed: Sail answered).
  CHECK(doc.types.at("sail_tinker_breaker_state") == "gauge");
  for (auto* s : doc.find("sail_tinker_breaker_state"))
    CHECK(s->value == (s->labels.at("state") == "closed" ? 1 : 0));
  CHECK(doc.find("sail_tinker_breaker_state").size() == 3);
  CHECK(doc.find("sail_tinker_breaker_opened_total")[0]->value == 0);
  CHECK(doc.find("sail_tinker_breaker_next_probe_seconds")[0]->value == 0);
  std::map<std::string, double> budget;
  for (auto* s : doc.find("sail_tinker_retry_budget"))
    budget[s->labels.at("window")] = s->value;
  REQUIRE(budget.size() == 3);
  // The floor (10/s over 10 s) plus one retry per first attempt of the window.
  CHECK(budget["allowed"] == 100 + budget["requests"]);
  CHECK(budget["retries"] == 0);
  CHECK(doc.types.at("sail_tinker_retry_budget_denied_total") == "counter");
  std::set<std::string> kinds;
  for (auto* s : doc.find("sail_tinker_samples_failed_total")) {
    kinds.insert(s->labels.at("kind"));
    CHECK(s->value == 0);
  }
  CHECK(kinds.count("http_error") == 1);
  CHECK(kinds.count("timeout") == 1);
  double groups = 0;
  for (auto* s : doc.find("sail_tinker_request_latency_seconds_count"))
    if (s->labels.at("op") == "sample_group")
      groups = s->value;
  CHECK(groups == 4);
  CHECK(http.get("/healthz").status() == 200);
  CHECK(http.get("/nope").status() == 404);

  serve.signal(SIGTERM);
  auto done = serve.wait(30s);
  CHECK_FALSE(done.timed_out);
  CHECK(done.exit_code == 0);
}

TEST_CASE("cli: serve argument errors exit 2", "[cli][serve]") {
  auto env = clean_env();
  env["SAIL_API_KEY"] = "sk_x";
  require_invalid(cli({"serve", "--metrics-port", "x"}, env), "metrics-port");
  require_invalid(cli({"serve", "--port", "70000"}, env), "port");
  require_invalid(cli({"serve", "--cluster.queue-timeout=soon"}, env), "cluster.queue-timeout");
  require_invalid(cli({"serve", "extra"}, env), "arguments");
  // Trainers bring the completer configuration; the node has none of its own.
  require_invalid(cli({"serve", "--model", "Qwen/Qwen3-8B"}, env), "model");
}

// -- serve off loopback ------------------------------------------------------------

namespace {

/// Environment of a serve process that never reaches Sail (it exits or is
/// stopped before any sample).
env_map serve_env() {
  auto env = clean_env();
  env["SAIL_API_KEY"] = "sk_x";
  env["SAIL_BASE_URL"] = "http://127.0.0.1:9";
  return env;
}

/// Starts `serve` with `args`, waits for both listening lines (they must
/// show `host`), stops it with SIGTERM and returns what it printed.
process_result serve_until_listening(const std::string& host, std::vector<std::string> args) {
  process_options opts;
  opts.env = serve_env();
  std::vector<std::string> full{"serve", "--host", host, "--port", "0", "--metrics-port", "0"};
  full.insert(full.end(), args.begin(), args.end());
  subprocess serve{binary(), full, opts};
  auto caf_line = serve.wait_for_line("listening on caf://", 30s);
  auto metrics_line = caf_line ? serve.wait_for_line("listening on http://", 30s) : std::nullopt;
  serve.signal(SIGTERM);
  auto done = serve.wait(30s);
  INFO("host " << host << "\nstdout: " << done.out << "\nstderr: " << done.err);
  REQUIRE(caf_line);
  REQUIRE(metrics_line);
  auto shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  CHECK(starts_with(*caf_line, "listening on caf://" + shown + ":"));
  CHECK(starts_with(*metrics_line, "listening on http://" + shown + ":"));
  CHECK_FALSE(done.timed_out);
  CHECK(done.exit_code == 0);
  return done;
}

} // namespace

TEST_CASE("cli: serve refuses plaintext off loopback without --insecure-plaintext",
          "[cli][serve]") {
  // Anything but 127.0.0.0/8, ::1 and localhost is off loopback: all
  // interfaces, an IPv4-mapped IPv6 address, other addresses and names.
  for (std::string host : {"0.0.0.0", "::", "::ffff:127.0.0.1", "", "10.11.12.13",
                           "node1.example", "127.1"}) {
    INFO("host '" << host << "'");
    auto res = cli({"serve", "--host", host, "--port", "0", "--metrics-port", "0"}, serve_env());
    require_invalid(res, "[field=host]");
    for (auto part : {"--openssl.certificate=FILE", "--openssl.key=FILE",
                      "--openssl.cafile=FILE", "docs/cluster.md", "--insecure-plaintext",
                      "--host 127.0.0.1"})
      CHECK(contains(res.err, part));
  }
}

TEST_CASE("cli: serve refuses an incomplete mutual TLS configuration off loopback",
          "[cli][serve]") {
  // Whatever --insecure-plaintext says: the node would be neither plaintext
  // nor working TLS.
  for (bool insecure : {false, true}) {
    std::vector<std::string> args{"serve", "--host", "0.0.0.0", "--port", "0",
                                  "--openssl.certificate=/nonexistent/node.pem"};
    if (insecure)
      args.push_back("--insecure-plaintext");
    auto res = cli(args, serve_env());
    require_invalid(res, "[field=openssl]");
    CHECK(contains(res.err, "missing openssl.key, openssl.cafile or openssl.capath"));
  }
  // The keys count from caf-application.ini too.
  temp_dir dir;
  dir.write("caf-application.ini", "[openssl]\ncafile=\"/nonexistent/ca.pem\"\n");
  auto res = cli({"serve", "--host", "0.0.0.0", "--port", "0"}, serve_env(), dir.path.string());
  require_invalid(res, "[field=openssl]");
  CHECK(contains(res.err, "missing openssl.certificate, openssl.key)"));
}

TEST_CASE("cli: serve --insecure-plaintext starts off loopback and warns", "[cli][serve]") {
  auto res = serve_until_listening("0.0.0.0", {"--insecure-plaintext"});
  CHECK(contains(res.err, "WARN  serve: INSECURE: plaintext CAF node on a non-loopback address "
                          "(--insecure-plaintext)"));
  CHECK(contains(res.err, "host=0.0.0.0"));
  CHECK(contains(res.err, "tls=false"));
}

TEST_CASE("cli: serve on loopback is unchanged", "[cli][serve]") {
  // Any address of 127.0.0.0/8 and localhost; no flag, no warning.
  for (std::string host : {"127.0.0.2", "localhost"}) {
    auto res = serve_until_listening(host, {});
    CHECK_FALSE(contains(res.err, "INSECURE"));
    CHECK(contains(res.err, "tls=false"));
  }
  // The flag changes nothing on loopback.
  auto res = serve_until_listening("127.0.0.1", {"--insecure-plaintext"});
  CHECK_FALSE(contains(res.err, "INSECURE"));
}

TEST_CASE("cli: serve with mutual TLS starts off loopback", "[cli][serve]") {
  auto certs = sail::test::make_cluster_certs(1);
  struct cleanup {
    sail::test::cluster_certs c;
    ~cleanup() { sail::test::remove_cluster_certs(c); }
  } guard{certs};
  auto res = serve_until_listening("0.0.0.0", {"--openssl.certificate=" + certs.peers[0].cert,
                                               "--openssl.key=" + certs.peers[0].key,
                                               "--openssl.cafile=" + certs.ca});
  CHECK_FALSE(contains(res.err, "INSECURE"));
  CHECK(contains(res.err, "tls=true"));
}

// -- completion webhooks -------------------------------------------------------------

TEST_CASE("cli: sample --webhook.enabled gets its result by webhook, without a GET",
          "[cli][sample][webhook]") {
  emulate_process emu{{"--request-log", "100"}};
  auto env = emu.sail_env();
  env["SAIL_TINKER_WEBHOOK_TOKEN"] = "whk_cli0123456789abcdef0123456789";
  auto res = cli(sample_args({"--window", "priority", "--webhook.enabled"}), env);
  auto out = parse_sample(res);
  CHECK(out.tokens.size() == 6);
  // The token from the environment never shows.
  CHECK_FALSE(contains(res.out, "cli0123456789abcdef"));
  CHECK_FALSE(contains(res.err, "cli0123456789abcdef"));
  sail::test::sync_http http{"127.0.0.1", emu.port};
  auto log = http.get("/_emulator/requests").json();
  size_t creates = 0;
  size_t gets = 0;
  for (auto& e : log.as_array()) {
    auto& entry = e.as_object();
    auto route = std::string{entry.at("route").as_string()};
    if (route == "POST /v1/responses") {
      ++creates;
      auto body = boost::json::parse(entry.at("request_body").as_string());
      auto& md = body.at("metadata").as_object();
      CHECK(std::string{md.at("completion_webhook").as_string()}.rfind("http://127.0.0.1:", 0)
            == 0);
      CHECK(md.at("webhook_token") == "whk_cli0123456789abcdef0123456789");
    } else if (route.rfind("GET /v1/responses", 0) == 0) {
      ++gets;
    }
  }
  CHECK(creates == 1);
  // priority's first safety-net poll comes 3 min after the create.
  CHECK(gets == 0);
  // A bad token from the environment is refused, naming it, before anything is sent.
  env["SAIL_TINKER_WEBHOOK_TOKEN"] = "short";
  require_invalid(cli(sample_args({"--webhook.enabled"}), env), "webhook");
  CHECK(emu.creates() == 1);
}

TEST_CASE("cli: a plaintext webhook listener off loopback needs --webhook.insecure-plaintext",
          "[cli][serve][webhook]") {
  auto res = cli({"serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                  "--webhook.enabled", "--webhook.host=0.0.0.0",
                  "--webhook.public-url=https://hooks.example.com/n1"},
                 serve_env());
  require_invalid(res, "webhook.insecure-plaintext");
  CHECK(contains(res.err, "webhook.certificate"));
  // Allowed explicitly (TLS terminated in front of it): the node starts and
  // names the public URL Sail calls.
  process_options opts;
  opts.env = serve_env();
  subprocess serve{binary(),
                   {"serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                    "--webhook.enabled", "--webhook.host=0.0.0.0",
                    "--webhook.insecure-plaintext",
                    "--webhook.public-url=https://hooks.example.com/n1"},
                   opts};
  auto line = serve.wait_for_line("webhook receiver on port", 30s);
  serve.signal(SIGTERM);
  auto done = serve.wait(30s);
  INFO("stderr: " << done.err);
  REQUIRE(line);
  CHECK(contains(*line, "Sail calls https://hooks.example.com/n1"));
  CHECK(done.exit_code == 0);
  // A listener on every interface needs the public URL.
  res = cli({"serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
             "--webhook.enabled", "--webhook.host=0.0.0.0",
             "--webhook.insecure-plaintext"},
            serve_env());
  require_invalid(res, "webhook.public-url");
}
