// `sail-tinker rollout --input P --output O --steps K` (app/rollout_steps.cpp,
// a step sampler over a durable run) as a user runs it, against
// `sail-tinker emulate` in a process of its own:
//
// - one record per group with its step, at most K fresh groups per step,
//   every prompt once, one inference per member;
// - SIGKILLed at failpoints (a step acknowledged, a body journaled, a create
//   accepted, a journal commit, half an output line) and run again until it
//   finishes: every prompt in the output exactly once, one inference per
//   member (nothing created twice, nothing delivered twice, none lost);
// - through two service nodes, one SIGKILLed after the first step: the same.
#include <catch2/catch.hpp>

#include <signal.h>

#include <map>
#include <sstream>

#include <boost/json/parse.hpp>

#include "support/cli_process.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using sail::test::process_options;
using sail::test::subprocess;
using sail::test::temp_dir;

namespace {

constexpr int group_size = 2;

std::string write_prompts(const temp_dir& dir, int prompt_count) {
  std::string text;
  for (int i = 0; i < prompt_count; ++i)
    text += "{\"id\":\"q" + std::to_string(i) + "\",\"prompt\":[" + std::to_string(i + 1)
            + ",5,9],\"meta\":{\"i\":" + std::to_string(i) + "}}\n";
  return dir.write("in.jsonl", text);
}

std::vector<std::string> steps_args(const temp_dir& dir, const std::string& input) {
  return {"rollout", "--input", input, "--output", dir.file("out.jsonl"),
          "--run-id", "steps-run", "--steps", "4", "--overprovision", "0.5",
          "--group-size", std::to_string(group_size), "--window", "asap",
          "--max-tokens", "6", "--progress", "off"};
}

sail::test::process_result run_cli(const std::vector<std::string>& args,
                                   const sail::test::env_map& env,
                                   const std::string& failpoint = {}) {
  process_options opts;
  opts.env = env;
  if (!failpoint.empty())
    opts.env["SAIL_TINKER_FAILPOINT"] = failpoint;
  return sail::test::run_process(sail::test::cli_binary(), args, opts, 120s);
}

struct record {
  uint64_t step = 0;
  size_t samples = 0;
  bool stale = false;
};

/// id -> records with that id (a correct output has exactly one each).
std::map<std::string, std::vector<record>> read_output(const std::string& path) {
  std::map<std::string, std::vector<record>> out;
  std::istringstream in{sail::test::read_file(path)};
  std::string line;
  while (std::getline(in, line)) {
    auto doc = boost::json::parse(line).as_object();
    record r;
    r.step = doc.at("step").to_number<uint64_t>();
    r.samples = doc.at("samples").as_array().size();
    r.stale = doc.at("stale").as_bool();
    CHECK(doc.at("meta").at("i").to_number<int>() >= 0);
    out[std::string{doc.at("id").as_string()}].push_back(r);
  }
  return out;
}

uint64_t number(const boost::json::value& doc, const char* key) {
  return doc.at(key).to_number<uint64_t>();
}

void check_once_each(const std::string& path, size_t prompt_count) {
  auto out = read_output(path);
  CHECK(out.size() == prompt_count);
  for (auto& [id, recs] : out) {
    INFO(id);
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].samples == group_size);
  }
}

} // namespace

TEST_CASE("rollout --steps: one record per group with its step, at most K fresh groups per "
          "step, one inference per member",
          "[rollout_steps][process]") {
  sail::test::emulate_process emu{{"--latency-spread", "log_normal_p99:3:10"}};
  temp_dir dir{"steps-cli"};
  constexpr int prompt_count = 12;
  auto input = write_prompts(dir, prompt_count);
  auto res = run_cli(steps_args(dir, input), emu.sail_env());
  INFO(res.out << res.err);
  REQUIRE(res.exit_code == 0);
  auto out = read_output(dir.file("out.jsonl"));
  REQUIRE(out.size() == prompt_count);
  std::map<uint64_t, int> fresh_per_step;
  for (auto& [id, recs] : out) {
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].samples == group_size);
    if (!recs[0].stale)
      ++fresh_per_step[recs[0].step];
  }
  // 12 prompts, K = 4, 6 in flight: steps 0..2 hold 4 each; the drain
  // (step 3) returns whatever is left (none here: 12 = 3 x 4).
  for (auto& [step, n] : fresh_per_step)
    CHECK(n <= 4);
  CHECK(fresh_per_step.size() >= 3);
  auto st = emu.stats(true);
  CHECK(number(st, "inference_runs_total") == prompt_count * group_size);
  CHECK(number(st, "max_runs_per_key") == 1);
  // Run again: everything acknowledged, nothing sent, nothing written twice.
  auto posts = emu.requests_to("POST /v1/responses");
  auto again = run_cli(steps_args(dir, input), emu.sail_env());
  INFO(again.out << again.err);
  REQUIRE(again.exit_code == 0);
  check_once_each(dir.file("out.jsonl"), prompt_count);
  CHECK(emu.requests_to("POST /v1/responses") == posts);
  // --restart: journal and output start over (the same run id, so the same
  // keys: Sail answers them without a second inference).
  auto restart_args = steps_args(dir, input);
  restart_args.push_back("--restart");
  auto restarted = run_cli(restart_args, emu.sail_env());
  INFO(restarted.out << restarted.err);
  REQUIRE(restarted.exit_code == 0);
  check_once_each(dir.file("out.jsonl"), prompt_count);
  CHECK(emu.requests_to("POST /v1/responses") > posts);
  CHECK(number(emu.stats(true), "max_runs_per_key") == 1);
}

TEST_CASE("rollout --steps: SIGKILLed at failpoints and run again, every group is in the "
          "output exactly once and every member ran once",
          "[rollout_steps][process]") {
  // The heavy-tail profile scaled to a median of 3 ms (p99 30 ms).
  sail::test::emulate_process emu{{"--latency-profile", "heavy-tail:0.003"}};
  temp_dir dir{"steps-kills"};
  constexpr int prompt_count = 60;
  auto input = write_prompts(dir, prompt_count);
  for (auto fp : {"sampler_acknowledged:1", "sample_journaled:9", "sample_accepted:13",
                  "output_line:5", "journal_commit:6", "sampler_acknowledged:2"}) {
    auto killed = run_cli(steps_args(dir, input), emu.sail_env(), fp);
    INFO(fp << "\n" << killed.out << killed.err);
    CHECK(killed.term_signal == SIGKILL);
  }
  auto done = run_cli(steps_args(dir, input), emu.sail_env());
  INFO(done.out << done.err);
  REQUIRE(done.exit_code == 0);
  check_once_each(dir.file("out.jsonl"), prompt_count);
  auto st = emu.stats(true);
  CHECK(number(st, "inference_runs_total") == prompt_count * group_size);
  CHECK(number(st, "max_runs_per_key") == 1);
}

TEST_CASE("rollout --steps: through two service nodes, one SIGKILLed after the first step, "
          "every group once and every member ran once",
          "[rollout_steps][process][nodes]") {
  sail::test::emulate_process emu{{"--latency-queued-ms", "60"}};
  process_options sopts;
  sopts.env = emu.sail_env();
  std::vector<std::unique_ptr<subprocess>> nodes;
  std::vector<std::string> addresses;
  for (int i = 0; i < 2; ++i) {
    nodes.push_back(std::make_unique<subprocess>(
      sail::test::cli_binary(),
      std::vector<std::string>{"serve", "--port", "0", "--metrics-port", "0"}, sopts));
    auto line = nodes.back()->wait_for_line("listening on caf://", 30s);
    REQUIRE(line);
    addresses.push_back(line->substr(std::string{"listening on caf://"}.size()));
  }
  temp_dir dir{"steps-nodes"};
  constexpr int prompt_count = 24;
  auto input = write_prompts(dir, prompt_count);
  auto args = steps_args(dir, input);
  args.insert(args.end(), {"--nodes", addresses[0] + "," + addresses[1]});
  process_options copts;
  copts.env = sail::test::clean_env();
  subprocess job{sail::test::cli_binary(), args, copts};
  auto step0 = job.wait_for_line("step 0:", 60s);
  INFO(job.out() << job.err());
  REQUIRE(step0);
  nodes[0]->signal(SIGKILL);
  auto done = job.wait(120s);
  INFO(done.out << done.err);
  REQUIRE(done.exit_code == 0);
  check_once_each(dir.file("out.jsonl"), prompt_count);
  auto st = emu.stats(true);
  CHECK(number(st, "inference_runs_total") == prompt_count * group_size);
  CHECK(number(st, "max_runs_per_key") == 1);
}
