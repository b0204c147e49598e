// `sail-tinker rollout --input` with real processes and real files: the
// emulator runs as its own process (`sail-tinker emulate`), so it outlives a
// job that is SIGKILLed. Failpoints (SAIL_TINKER_FAILPOINT, see
// rollout/failpoint.hpp) kill the job at precise points, no sleeps.
//
// - the crash matrix: killed before any create, with creates in flight, with
//   polls in flight (response ids journaled), while results arrive, while an
//   output line is written (a torn line), during a journal commit, and a chain
//   of kills; after the last resume the output holds every id once with n
//   samples, equals (sorted) an uninterrupted run with the same --run-id
//   against a fresh emulator, and the emulator ran inference exactly once per
//   sample;
// - resume after SIGTERM (exit 130) and after a node loss with --nodes;
// - every bad input line kind: exit 2, its message, nothing sent;
// - a changed configuration, input or run id: exit 2 naming it; --restart;
// - meta round-trips byte for byte; --ordered keeps input order; stdin input.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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

#include "sail_tinker/rollout/journal.hpp"
#include "sail_tinker/rollout/keys.hpp"
#include "support/paths.hpp"
#include "support/cli_process.hpp"
#include "support/process.hpp"
#include "support/sync_http.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using sail::test::process_options;
using sail::test::process_result;
using sail::test::read_file;
using sail::test::subprocess;
using sail::test::temp_dir;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

using sail::test::clean_env;
using sail::test::env_map;

std::string binary() {
  return sail::test::cli_binary();
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

/// `sail-tinker emulate` as a separate process.
struct emulator_process : sail::test::emulate_process {
  using sail::test::emulate_process::emulate_process;

  /// Requests to Sail's routes (create and poll), any status.
  uint64_t sail_requests() const {
    return requests_to("POST /v1/responses") + requests_to("GET /v1/responses/{id}");
  }
};

uint64_t number(const json::value& doc, const char* key) {
  return doc.at(key).to_number<uint64_t>();
}

/// A job's directory: its input written to in.jsonl, its output's path.
struct job_dir : temp_dir {
  std::string input;
  std::string out;

  job_dir(const std::string& name, const std::string& input_text)
    : temp_dir("rollout-" + name), input(write("in.jsonl", input_text)), out(file("out.jsonl")) {
  }
};

// -- the input ------------------------------------------------------------------------

struct test_input {
  std::string text;
  std::vector<std::string> ids;
  std::map<std::string, size_t> n_of;
  uint64_t samples = 0;
};

/// `prompts` prompts of 1..40 tokens, n cycling 1..4, every kind of stop, a
/// per-line max_tokens on some, and assorted meta values.
test_input make_input(size_t prompts) {
  test_input in;
  const char* stops[] = {"", R"(,"stop":2)", R"(,"stop":[2,60])", R"(,"stop":"END")",
                         R"(,"stop":["\n","."])"};
  const char* metas[] = {"", R"(,"meta":{"label": "x", "i": 1.50})", R"(,"meta":"a \"b\"")",
                         R"(,"meta":[1,{"k":null}])"};
  for (size_t i = 0; i < prompts; ++i) {
    auto id = "p-" + std::to_string(i);
    size_t n = 1 + i % 4;
    std::string tokens;
    for (size_t t = 0; t < 1 + (i * 7) % 40; ++t)
      tokens += (t > 0 ? "," : "") + std::to_string((i * 31 + t * 17) % 64);
    in.text += R"({"id":")" + id + R"(","prompt":[)" + tokens + "]";
    if (n > 1)
      in.text += R"(,"n":)" + std::to_string(n);
    if (i % 3 == 1)
      in.text += R"(,"max_tokens":)" + std::to_string(2 + i % 5);
    in.text += stops[i % 5];
    in.text += metas[i % 4];
    in.text += "}\n";
    if (i % 7 == 3)
      in.text += "\n"; // blank lines are ignored
    in.ids.push_back(id);
    in.n_of[id] = n;
    in.samples += n;
  }
  return in;
}

/// Checks the contract's guarantee: every input id exactly once, n samples
/// each, no torn line. Returns the lines sorted.
std::vector<std::string> check_complete(const std::string& path, const test_input& in) {
  auto text = read_file(path);
  REQUIRE_FALSE(text.empty());
  CHECK(text.back() == '\n');
  auto lines = lines_of(text);
  std::map<std::string, size_t> seen;
  for (auto& line : lines) {
    json::error_code ec;
    json::parse_options deep;
    deep.max_depth = 64; // the input's limit (a meta may nest that deep)
    auto v = json::parse(line, ec, {}, deep);
    INFO(line);
    REQUIRE_FALSE(ec);
    auto id = std::string{v.at("id").as_string()};
    ++seen[id];
    REQUIRE(in.n_of.count(id) == 1);
    CHECK(v.at("samples").as_array().size() == in.n_of.at(id));
    for (auto& s : v.at("samples").as_array())
      CHECK(s.as_object().contains("tokens")); // no sample failed
  }
  CHECK(seen.size() == in.ids.size());
  for (auto& [id, count] : seen) {
    INFO(id);
    CHECK(count == 1);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

/// The guarantee of a run however often it was interrupted: its output is
/// the uninterrupted run's (`reference`, sorted lines), and the emulator ran
/// inference exactly once per sample.
void check_exactly_once(const emulator_process& emu, const std::string& out,
                        const test_input& in, const std::vector<std::string>& reference) {
  CHECK(check_complete(out, in) == reference);
  auto st = emu.stats(true);
  CHECK(number(st, "inference_runs_total") == in.samples);
  CHECK(number(st, "max_runs_per_key") == 1);
}

struct job_options {
  std::string run_id = "crash-run";
  std::string concurrency = "4";
  std::vector<std::string> extra;
};

std::vector<std::string> job_args(const std::string& in, const std::string& out,
                                  const job_options& o) {
  std::vector<std::string> args{"rollout",       "--input",      in,         "--output",
                                out,             "--window",     "asap",     "--max-tokens",
                                "8",             "--concurrency", o.concurrency, "--run-id",
                                o.run_id,        "--progress",   "lines"};
  args.insert(args.end(), o.extra.begin(), o.extra.end());
  return args;
}

process_result run_job(const emulator_process& emu, const std::string& in,
                       const std::string& out, const job_options& o = {},
                       const std::string& failpoint = {}) {
  process_options opts;
  opts.env = emu.sail_env();
  if (!failpoint.empty())
    opts.env["SAIL_TINKER_FAILPOINT"] = failpoint;
  return sail::test::run_process(binary(), job_args(in, out, o), opts, 120s);
}

/// The output of one uninterrupted run (same run id, fresh emulator).
const std::vector<std::string>& reference_output(const test_input& in) {
  static std::optional<std::vector<std::string>> cached;
  if (!cached) {
    job_dir dir{"reference", in.text};
    emulator_process emu{{"--latency-queued-ms", "5"}};
    auto res = run_job(emu, dir.input, dir.out);
    INFO(res.out << res.err);
    REQUIRE(res.exit_code == 0);
    cached = check_complete(dir.out, in);
    auto st = emu.stats(true);
    CHECK(number(st, "inference_runs_total") == in.samples);
  }
  return *cached;
}

/// Samples whose response id is journaled but whose result is not, of the
/// prompts not yet in the output (a complete line after the journal's last
/// commit is a finished prompt: the resume reads it and polls nothing).
std::map<std::string, std::string> accepted_not_completed(const std::string& output,
                                                          const test_input& in) {
  std::set<std::string> in_output;
  auto text = read_file(output);
  auto complete = lines_of(text.substr(0, text.rfind('\n') + 1));
  for (auto& line : complete)
    if (!line.empty())
      in_output.emplace(json::parse(line).at("id").as_string());
  std::map<std::string, std::string> out; // key -> response id
  auto j = sail::rollout::journal::open(output + ".journal");
  REQUIRE(j);
  for (auto& id : in.ids) {
    if (*(*j)->written(id) || in_output.count(id) != 0)
      continue;
    auto samples = (*j)->samples(id);
    REQUIRE(samples);
    for (auto& s : *samples)
      if (s.state == sail::rollout::sample_state::accepted)
        out[s.key] = s.response_id;
  }
  return out;
}

size_t posts_of(const json::value& stats, const std::string& key) {
  auto* a = stats.at("arrivals").as_object().if_contains(key);
  return a == nullptr ? 0 : a->as_array().size();
}

size_t polls_of(const json::value& stats, const std::string& rid) {
  auto* a = stats.at("poll_arrivals").as_object().if_contains(rid);
  return a == nullptr ? 0 : a->as_array().size();
}

/// Runs the job once per failpoint (each must be killed by it), then once
/// without: the final output and the emulator's inference count must be
/// exactly those of an uninterrupted run.
void crash_and_resume(const test_input& in, const std::vector<std::string>& failpoints,
                      std::vector<std::string> emulator_args = {"--latency-queued-ms", "150"}) {
  const auto& reference = reference_output(in);
  job_dir dir{"crash", in.text};
  emulator_process emu{emulator_args};
  for (auto& fp : failpoints) {
    INFO("failpoint " << fp);
    auto res = run_job(emu, dir.input, dir.out, {}, fp);
    INFO(res.out << res.err);
    REQUIRE(res.term_signal == SIGKILL);
    if (fp.compare(0, 12, "output_line:") == 0) {
      // Killed in the middle of a line: the file ends with a torn line.
      auto text = read_file(dir.out);
      REQUIRE_FALSE(text.empty());
      CHECK(text.back() != '\n');
    }
  }
  auto res = run_job(emu, dir.input, dir.out);
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  CHECK(contains(res.out, "resume: "));
  check_exactly_once(emu, dir.out, in, reference);
}

} // namespace

// -- the crash matrix ------------------------------------------------------------------

TEST_CASE("rollout files: SIGKILL before any create, then resume", "[rollout][crash]") {
  crash_and_resume(make_input(24), {"run_started:1"});
}

TEST_CASE("rollout files: SIGKILL with creates in flight, then resume", "[rollout][crash]") {
  crash_and_resume(make_input(24), {"sample_accepted:1"});
}

TEST_CASE("rollout files: SIGKILL while results arrive, then resume", "[rollout][crash]") {
  crash_and_resume(make_input(24), {"sample_completed:9"});
}

TEST_CASE("rollout files: SIGKILL while an output line is written, then resume",
          "[rollout][crash]") {
  crash_and_resume(make_input(24), {"output_line:4"});
}

TEST_CASE("rollout files: SIGKILL during a journal commit, then resume", "[rollout][crash]") {
  crash_and_resume(make_input(24), {"journal_commit:4"});
}

TEST_CASE("rollout files: a meta nested deeper than 32 levels survives a crash and resume",
          "[rollout][crash]") {
  // The input allows 64 levels of JSON; the resume's repair of the output
  // once read lines with Boost.JSON's default limit of 32 and refused the
  // rollout's own output (found by fuzz/prompts_line_fuzz).
  test_input in;
  std::string deep = std::string(40, '[') + "\"x\"" + std::string(40, ']');
  for (size_t i = 0; i < 12; ++i) {
    auto id = "deep-" + std::to_string(i);
    in.text += R"({"id":")" + id + R"(","prompt":[1,2,3],"meta":)" + deep + "}\n";
    in.ids.push_back(id);
    in.n_of[id] = 1;
    in.samples += 1;
  }
  crash_and_resume(in, {"journal_commit:2", "output_line:3"});
}

TEST_CASE("rollout files: a chain of kills at different points, then resume",
          "[rollout][crash]") {
  crash_and_resume(make_input(24), {"output_line:2", "journal_commit:3", "sample_accepted:5",
                                    "sample_completed:4", "run_started:1"});
}

TEST_CASE("rollout files: SIGKILL with polls in flight: known response ids are polled, "
          "not created again",
          "[rollout][crash]") {
  auto in = make_input(24);
  const auto& reference = reference_output(in);
  job_dir dir{"polls", in.text};
  // Queued for 1.5 s: the creates of the first prompts are accepted and
  // committed (commit 2), and the job dies in the commit of their first
  // results (commit 3), while the others are still being polled.
  emulator_process emu{{"--latency-queued-ms", "1500"}};
  auto killed = run_job(emu, dir.input, dir.out, {}, "journal_commit:3");
  INFO(killed.out << killed.err);
  REQUIRE(killed.term_signal == SIGKILL);
  auto known = accepted_not_completed(dir.out, in);
  REQUIRE_FALSE(known.empty());
  auto before = emu.stats();
  auto res = run_job(emu, dir.input, dir.out);
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  CHECK(contains(res.out, std::to_string(known.size()) + " samples to re-attach"));
  auto after = emu.stats();
  for (auto& [key, rid] : known) {
    INFO(key << " " << rid);
    CHECK(posts_of(after, key) == posts_of(before, key));
    CHECK(polls_of(after, rid) > polls_of(before, rid));
  }
  check_exactly_once(emu, dir.out, in, reference);
}

// -- SIGTERM and node loss --------------------------------------------------------------

namespace {

/// Waits for a progress line that reports at least one prompt written.
void wait_for_first_prompt(subprocess& job) {
  for (;;) {
    auto line = job.wait_for_line("progress: ", 60s);
    INFO(job.out() << job.err());
    REQUIRE(line);
    std::smatch m;
    REQUIRE(std::regex_search(*line, m, std::regex{R"(^progress: (\d+)/)"}));
    if (std::stoul(m[1]) >= 1)
      return;
  }
}

} // namespace

TEST_CASE("rollout files: SIGTERM flushes and exits 130, the resume completes the run",
          "[rollout][signal]") {
  auto in = make_input(24);
  const auto& reference = reference_output(in);
  job_dir dir{"sigterm", in.text};
  emulator_process emu{{"--latency-queued-ms", "300"}};
  process_options opts;
  opts.env = emu.sail_env();
  subprocess job{binary(), job_args(dir.input, dir.out, {}), opts};
  wait_for_first_prompt(job);
  job.signal(SIGTERM);
  auto res = job.wait(60s);
  INFO(res.out << res.err);
  REQUIRE(res.exited);
  CHECK(res.exit_code == 130);
  CHECK(contains(res.out, "(interrupted)"));
  // What was written is complete lines of distinct ids, and the journal
  // knows them.
  auto partial = read_file(dir.out);
  REQUIRE_FALSE(partial.empty());
  CHECK(partial.back() == '\n');
  auto written = lines_of(partial);
  CHECK(written.size() < in.ids.size());
  {
    auto j = sail::rollout::journal::open(dir.out + ".journal");
    REQUIRE(j);
    CHECK((*j)->output_offset() == partial.size());
    for (auto& line : written)
      CHECK(*(*j)->written(std::string{json::parse(line).at("id").as_string()}));
  }
  auto again = run_job(emu, dir.input, dir.out);
  INFO(again.out << again.err);
  REQUIRE(again.exit_code == 0);
  CHECK(contains(again.out, "resume: " + std::to_string(written.size()) + " prompts done"));
  check_exactly_once(emu, dir.out, in, reference);
}

TEST_CASE("rollout files: --nodes, a node is lost, the job is killed, the resume completes",
          "[rollout][nodes]") {
  auto in = make_input(24);
  const auto& reference = reference_output(in);
  job_dir dir{"nodes", in.text};
  emulator_process emu{{"--latency-queued-ms", "300"}};
  process_options sopts;
  sopts.env = emu.sail_env();
  std::vector<std::unique_ptr<subprocess>> nodes;
  std::vector<std::string> addresses;
  for (int i = 0; i < 2; ++i) {
    nodes.push_back(std::make_unique<subprocess>(
      binary(), std::vector<std::string>{"serve", "--port", "0", "--metrics-port", "0"}, sopts));
    auto line = nodes.back()->wait_for_line("listening on caf://", 30s);
    INFO(nodes.back()->err());
    REQUIRE(line);
    addresses.push_back(line->substr(std::string{"listening on caf://"}.size()));
  }
  job_options o;
  o.extra = {"--nodes", addresses[0] + "," + addresses[1], "--cluster.connect-timeout=5s"};
  process_options jopts;
  jopts.env = clean_env();
  // Killed near the end, after the node loss below.
  jopts.env["SAIL_TINKER_FAILPOINT"] = "sample_completed:" + std::to_string(in.samples - 4);
  subprocess job{binary(), job_args(dir.input, dir.out, o), jopts};
  wait_for_first_prompt(job);
  nodes[0]->signal(SIGKILL);
  auto killed = job.wait(120s);
  INFO(killed.out << killed.err);
  REQUIRE(killed.term_signal == SIGKILL);
  // The response ids created on the nodes reached the journal: the observer
  // handle travels with each sample to the node.
  {
    auto j = sail::rollout::journal::open(dir.out + ".journal");
    REQUIRE(j);
    size_t with_id = 0;
    for (auto& id : in.ids) {
      auto samples = (*j)->samples(id);
      REQUIRE(samples);
      for (auto& s : *samples)
        with_id += s.response_id.empty() ? 0 : 1;
    }
    CHECK(with_id > 0);
  }
  process_options ropts;
  ropts.env = clean_env();
  auto res = sail::test::run_process(binary(), job_args(dir.input, dir.out, o), ropts, 120s);
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  CHECK(contains(res.out, "resume: "));
  check_exactly_once(emu, dir.out, in, reference);
  nodes[1]->signal(SIGTERM);
  nodes[1]->wait(30s);
}

// -- input and configuration errors -----------------------------------------------------

TEST_CASE("rollout files: every bad input line kind exits 2 naming line and field, "
          "nothing sent",
          "[rollout][input]") {
  temp_dir dir{"bad"};
  emulator_process emu;
  std::string good = "{\"id\":\"a\",\"prompt\":[1,2]}\n\n";
  struct bad_case {
    std::string line;
    std::string message;
  };
  std::vector<bad_case> cases{
    {"{not json", "input:3: line: not valid JSON"},
    {"[1]", "input:3: line: expected a JSON object"},
    {R"({"prompt":[1]})", "input:3: id: missing"},
    {R"({"id":7,"prompt":[1]})", "input:3: id: expected a string"},
    {R"({"id":"","prompt":[1]})", "input:3: id: must be 1..128 characters"},
    {R"({"id":")" + std::string(129, 'i') + R"(","prompt":[1]})",
     "input:3: id: must be 1..128 characters"},
    {R"({"id":"a","prompt":[3]})", "input:3: id: duplicate id \"a\" (first on line 1)"},
    {R"({"id":"b"})", "input:3: prompt: missing"},
    {R"({"id":"b","prompt":[]})", "input:3: prompt: must not be empty"},
    {R"({"id":"b","prompt":[1.5]})", "input:3: prompt: item 0 is not an integer"},
    {R"({"id":"b","prompt":[2147483648]})", "input:3: prompt: token id 2147483648"},
    {R"({"id":"b","prompt":[1],"n":0})", "input:3: n: must be within 1..4096"},
    {R"({"id":"b","prompt":[1],"max_tokens":0})", "input:3: max_tokens: must be >= 1"},
    {R"({"id":"b","prompt":[1],"stop":[1,"x"]})", "input:3: stop: mixes token ids and strings"},
    {R"({"id":"b","prompt":[1],"stop":[""]})", "input:3: stop: stop strings must not be empty"},
    {R"({"id":"b","prompt":[1],"seed":3})", "input:3: seed: unknown key"},
    // A key that looks like a secret (a JWT) is redacted in the message and
    // in the field that the error shows (found by fuzz/prompts_line_fuzz).
    {R"({"id":"b","prompt":[1],"eyJhbGciOiJIUzI1NiJ9":3})", "input:3: [REDACTED]: unknown key"},
    {R"({"id":"b","prompt":[1],"prompt":[2]})", "input:3: prompt: key appears twice"},
  };
  for (auto& c : cases) {
    auto input = dir.write("bad.jsonl", good + c.line + "\n{\"id\":\"z\",\"prompt\":[1]}\n");
    auto out = dir.file("out.jsonl");
    auto res = run_job(emu, input, out);
    INFO(c.line << "\n" << res.out << res.err);
    CHECK(res.exit_code == 2);
    CHECK(res.err.compare(0, 25 + c.message.size(), "error: invalid_argument: " + c.message)
          == 0);
    CHECK_FALSE(contains(res.err, "eyJhbGci"));
    CHECK_FALSE(fs::exists(out));
    CHECK_FALSE(fs::exists(out + ".journal"));
  }
  // A missing input file is an io_error (exit 1), still before any request.
  auto missing = run_job(emu, dir.file("nope.jsonl"), dir.file("out.jsonl"));
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.err, "error: io_error: cannot open"));
  CHECK(emu.sail_requests() == 0);
}

TEST_CASE("rollout files: a changed configuration, input or run id exits 2 naming it, "
          "--restart starts over",
          "[rollout][resume]") {
  auto in = make_input(8);
  job_dir dir{"mismatch", in.text};
  emulator_process emu;
  auto first = run_job(emu, dir.input, dir.out);
  INFO(first.out << first.err);
  REQUIRE(first.exit_code == 0);
  auto reference = check_complete(dir.out, in);
  auto requests = emu.sail_requests();
  // The same command again: nothing to do, nothing sent.
  auto same = run_job(emu, dir.input, dir.out);
  INFO(same.out << same.err);
  CHECK(same.exit_code == 0);
  CHECK(contains(same.out, "resume: 8 prompts done"));
  CHECK(contains(same.out, "0 written, 8 already in the output"));
  CHECK(emu.sail_requests() == requests);
  // Configuration.
  job_options changed;
  changed.extra = {"--temperature", "0.5", "--model", "other/model"};
  auto cfg = run_job(emu, dir.input, dir.out, changed);
  CHECK(cfg.exit_code == 2);
  CHECK(contains(cfg.err, "error: invalid_argument: the configuration differs from the "
                          "journal's"));
  CHECK(contains(cfg.err, "temperature (journal 1, now 0.5)"));
  CHECK(contains(cfg.err, "model (journal \"moonshotai/Kimi-K2.6\", now \"other/model\")"));
  CHECK(contains(cfg.err, "[field=config]"));
  job_options bigger_groups;
  bigger_groups.extra = {"--group-size", "2"};
  auto groups = run_job(emu, dir.input, dir.out, bigger_groups);
  CHECK(groups.exit_code == 2);
  CHECK(contains(groups.err, "group_size (journal 1, now 2)"));
  // Input.
  auto other_input = dir.write("other.jsonl", in.text + "{\"id\":\"new\",\"prompt\":[1]}\n");
  auto inp = run_job(emu, other_input, dir.out);
  CHECK(inp.exit_code == 2);
  CHECK(contains(inp.err, "error: invalid_argument: the input differs from the journal's"));
  CHECK(contains(inp.err, "[field=input]"));
  // Run id.
  job_options other_run;
  other_run.run_id = "another-run";
  auto rid = run_job(emu, dir.input, dir.out, other_run);
  CHECK(rid.exit_code == 2);
  CHECK(contains(rid.err, "--run-id another-run differs from the journal's run crash-run"));
  CHECK(emu.sail_requests() == requests);
  CHECK(check_complete(dir.out, in) == reference);
  // An output without its journal is not overwritten silently.
  fs::remove(dir.out + ".journal");
  auto orphan = run_job(emu, dir.input, dir.out);
  CHECK(orphan.exit_code == 2);
  CHECK(contains(orphan.err, "exists and is not empty"));
  // --restart with the same run id: journal and output discarded, but the
  // keys are the same, so Sail replays every sample: no inference runs.
  job_options same_run;
  same_run.extra = {"--restart"};
  auto replay = run_job(emu, dir.input, dir.out, same_run);
  INFO(replay.out << replay.err);
  REQUIRE(replay.exit_code == 0);
  CHECK(check_complete(dir.out, in) == reference);
  CHECK(number(emu.stats(true), "inference_runs_total") == in.samples);
  // --restart with another run id: a new run (new keys: inference runs
  // again, once per sample).
  job_options restart;
  restart.run_id = "second-run";
  restart.extra = {"--restart", "--temperature", "0.5"};
  auto again = run_job(emu, dir.input, dir.out, restart);
  INFO(again.out << again.err);
  REQUIRE(again.exit_code == 0);
  check_complete(dir.out, in);
  CHECK(contains(again.out, "run second-run"));
  auto st = emu.stats(true);
  CHECK(number(st, "inference_runs_total") == 2 * in.samples);
  CHECK(number(st, "max_runs_per_key") == 1);
}

// -- meta, order, stdin ---------------------------------------------------------------------

TEST_CASE("rollout files: meta round-trips byte for byte, --ordered keeps input order",
          "[rollout][order]") {
  temp_dir dir{"order"};
  // Later prompts finish first: fewer tokens at 20 ms per token.
  std::vector<std::string> metas{R"({ "a" : [1, 2.50, "\u00e9\n"] })", R"("s")", "1.50",
                                 "null", R"([{}, [], ""])", R"({"nested":{"k":{"x":[true]}}})"};
  std::string text;
  std::vector<std::string> ids;
  for (size_t i = 0; i < 12; ++i) {
    auto id = "o-" + std::to_string(i);
    ids.push_back(id);
    text += R"({"id":")" + id + R"(","prompt":[)" + std::to_string(i + 3) + R"(],"max_tokens":)"
            + std::to_string(12 - i);
    if (i < metas.size())
      text += R"(,"meta":)" + metas[i];
    text += "}\n";
  }
  auto input = dir.write("in.jsonl", text);
  emulator_process emu{{"--latency-per-token-us", "20000"}};
  auto ids_of = [](const std::string& path) {
    std::vector<std::string> out;
    for (auto& line : lines_of(read_file(path)))
      out.emplace_back(json::parse(line).at("id").as_string());
    return out;
  };
  job_options o;
  o.concurrency = "12";
  o.extra = {"--max-tokens", "32", "--ordered"};
  auto ordered = run_job(emu, input, dir.file("ordered.jsonl"), o);
  INFO(ordered.out << ordered.err);
  REQUIRE(ordered.exit_code == 0);
  CHECK(ids_of(dir.file("ordered.jsonl")) == ids);
  // Without --ordered the same input completes in another order.
  job_options u;
  u.concurrency = "12";
  u.run_id = "unordered";
  u.extra = {"--max-tokens", "32", "--no-journal"};
  auto unordered = run_job(emu, input, dir.file("unordered.jsonl"), u);
  INFO(unordered.out << unordered.err);
  REQUIRE(unordered.exit_code == 0);
  CHECK_FALSE(fs::exists(dir.file("unordered.jsonl.journal")));
  CHECK(ids_of(dir.file("unordered.jsonl")) != ids);
  // meta exactly as in the input, and only where the input had it.
  for (auto& line : lines_of(read_file(dir.file("ordered.jsonl")))) {
    auto id = std::string{json::parse(line).at("id").as_string()};
    auto i = std::stoul(id.substr(2));
    if (i < metas.size()) {
      auto suffix = R"(,"meta":)" + metas[i] + "}";
      INFO(line);
      CHECK(line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0);
    } else {
      CHECK_FALSE(contains(line, "\"meta\""));
    }
  }
}

TEST_CASE("rollout files: standard input as the input, resumable", "[rollout][stdin]") {
  auto in = make_input(6);
  job_dir dir{"stdin", in.text};
  emulator_process emu;
  auto cmd = binary() + " rollout --input - --output " + dir.out
             + " --window asap --max-tokens 8 --run-id crash-run --progress lines < " + dir.input;
  process_options opts;
  opts.env = emu.sail_env();
  auto res = sail::test::run_process("/bin/sh", {"-c", cmd}, opts, 120s);
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  CHECK(contains(res.out, "from standard input"));
  check_complete(dir.out, in);
  // The same bytes again resume; other bytes are another input.
  res = sail::test::run_process("/bin/sh", {"-c", cmd}, opts, 120s);
  CHECK(res.exit_code == 0);
  CHECK(contains(res.out, "resume: 6 prompts done"));
  auto other = dir.write("other.jsonl", "{\"id\":\"x\",\"prompt\":[1]}\n");
  auto cmd2 = cmd.substr(0, cmd.rfind('<')) + "< " + other;
  res = sail::test::run_process("/bin/sh", {"-c", cmd2}, opts, 120s);
  CHECK(res.exit_code == 2);
  CHECK(contains(res.err, "the input differs"));
  // Nothing is left in the output's directory but the files of the run.
  std::set<std::string> names;
  for (auto& e : fs::directory_iterator(dir.path))
    names.insert(e.path().filename().string());
  CHECK(names == std::set<std::string>{"in.jsonl", "other.jsonl", "out.jsonl",
                                       "out.jsonl.journal"});
}
