// Durable runs (rollout/durable_run.hpp, actors/durable_completer.hpp)
// through the paths a C++ trainer takes:
//
// - in process, through runtime::make_durable_completer: the same calls
//   after the run is reopened are answered from the journal with no HTTP
//   request; another model at the same call is invalid_argument naming
//   `model` and nothing is sent; a journal of schema 1 opens (upgraded);
// - a trainer process (tests/programs/durable_trainer.cpp: 3 steps, groups
//   of 4, a second turn per member) SIGKILLed at failpoints -- after a body
//   is journaled and before its create is sent, after a create is accepted
//   and before its response id is journaled, during a journal commit --
//   and run again until it finishes: its records equal those of one
//   uninterrupted run with the same run id against a fresh emulator, and
//   the emulator ran exactly one inference per sample; a finished run run
//   again sends no request at all;
// - the same trainer through two service nodes, one of them SIGKILLed.
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <signal.h>

#include <filesystem>
#include <functional>
#include <set>

#include <caf/scoped_actor.hpp>
#include <sqlite3.h>

#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/messages/type_ids.hpp"
#include "sail_tinker/rollout/durable_run.hpp"
#include "sail_tinker/rollout/journal.hpp"
#include "support/cli_process.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"
#include "support/stack_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::process_options;
using sail::test::stack_fixture;
using sail::test::subprocess;
using sail::test::temp_dir;

namespace {

uint64_t sail_requests(const emulator::server& emu) {
  auto st = emu.snapshot();
  uint64_t n = 0;
  for (auto* route : {"POST /v1/responses", "GET /v1/responses/{id}"})
    if (auto i = st.requests.find(route); i != st.requests.end())
      for (auto& [status, count] : i->second)
        n += count;
  return n;
}

completer_config toy(std::string model = "emulator/toy") {
  auto c = stack_fixture::config(6);
  c.model = std::move(model);
  c.completion_window = "asap";
  return c;
}

/// One step's calls: a group of 4, then two single samples.
struct step_calls {
  caf::expected<group_result> group{group_result{}};
  std::vector<caf::expected<tokens_with_logprobs>> singles;
};

step_calls run_step(caf::actor_system& sys, completer_actor c) {
  caf::scoped_actor self{sys};
  step_calls out;
  sample_request g;
  g.prompt = model_input{{5, 6, 7}};
  self->request(c, 30s, atom::sample_group_v, g, uint32_t{4})
    .receive([&](group_result& r) { out.group = std::move(r); },
             [&](caf::error& err) { out.group = std::move(err); });
  for (int64_t i = 0; i < 2; ++i) {
    sample_request s;
    s.prompt = model_input{{9, 9, i}};
    self->request(c, 30s, atom::sample_v, s)
      .receive([&](tokens_with_logprobs& r) { out.singles.emplace_back(std::move(r)); },
               [&](caf::error& err) { out.singles.emplace_back(std::move(err)); });
  }
  return out;
}

std::string trainer_binary() {
  return std::string{sail::test::binary_dir} + "/tests/durable_trainer";
}

uint64_t number(const boost::json::value& doc, const char* key) {
  return doc.at(key).to_number<uint64_t>();
}

/// Samples per trainer run: 3 steps x 2 episodes x 4 members x 2 turns.
constexpr uint64_t trainer_samples = 48;

sail::test::process_result run_trainer(const sail::test::env_map& env, const std::string& dir,
                                       const std::string& failpoint = {},
                                       const std::string& nodes = {}) {
  process_options opts;
  opts.env = env;
  if (!failpoint.empty())
    opts.env["SAIL_TINKER_FAILPOINT"] = failpoint;
  std::vector<std::string> args{"--journal", dir + "/run.journal", "--run-id", "trainer-run",
                                "--out", dir + "/records.txt"};
  if (!nodes.empty())
    args.insert(args.end(), {"--nodes", nodes});
  return sail::test::run_process(trainer_binary(), args, opts, 120s);
}

/// The records of one uninterrupted trainer run (same run id) against a
/// fresh emulator.
const std::string& reference_records() {
  static std::optional<std::string> cached;
  if (!cached) {
    sail::test::emulate_process emu;
    temp_dir dir{"durable-reference"};
    auto res = run_trainer(emu.sail_env(), dir.path.string());
    INFO(res.out << res.err);
    REQUIRE(res.exit_code == 0);
    CHECK(number(emu.stats(true), "inference_runs_total") == trainer_samples);
    cached = sail::test::read_file(dir.file("records.txt"));
  }
  return *cached;
}

} // namespace

TEST_CASE("durable run: reopened, the same calls are answered from the journal with no "
          "request, and another model at the same call is refused naming model",
          "[durable]") {
  stack_fixture fx;
  temp_dir dir{"durable-inproc"};
  auto path = dir.file("run.journal");
  step_calls first;
  std::string run_id;
  {
    auto run = rollout::durable_run::open(path);
    REQUIRE(run);
    run_id = (*run)->id();
    auto c = fx.rt->make_durable_completer(toy(), {*run, "0", std::nullopt, std::nullopt});
    REQUIRE(c);
    first = run_step(fx.sys, *c);
    REQUIRE(first.group);
    REQUIRE(first.group->members.size() == 4);
    // A group sent without an id gets one, and its members share it as
    // their prompt_cache_key (the cached prefix is billed cheaper).
    CHECK_FALSE(first.group->group_id.empty());
    std::set<std::string> cache_keys;
    for (auto& e : fx.emu.request_log())
      if (e.route == "POST /v1/responses"
          && e.request_body.find("[5,6,7]") != std::string::npos)
        cache_keys.insert(boost::json::parse(e.request_body)
                            .as_object()
                            .at("prompt_cache_key")
                            .as_string()
                            .c_str());
    CHECK(cache_keys == std::set<std::string>{first.group->group_id});
    for (auto& s : first.singles)
      REQUIRE(s);
    auto st = (*run)->stats();
    CHECK(st["0"].fresh == 6);
    CHECK(st["0"].from_journal == 0);
    REQUIRE_FALSE((*run)->close());
  }
  auto runs = fx.emu.snapshot().inference_runs_total;
  CHECK(runs == 6);
  auto before = sail_requests(fx.emu);
  {
    // Reopened (a new process would do the same): the run keeps its id.
    auto run = rollout::durable_run::open(path);
    REQUIRE(run);
    CHECK((*run)->id() == run_id);
    auto c = fx.rt->make_durable_completer(toy(), {*run, "0", std::nullopt, std::nullopt});
    REQUIRE(c);
    auto again = run_step(fx.sys, *c);
    REQUIRE(again.group);
    CHECK(again.group->members == first.group->members);
    REQUIRE(again.singles.size() == 2);
    CHECK(*again.singles[0] == *first.singles[0]);
    CHECK(*again.singles[1] == *first.singles[1]);
    CHECK((*run)->stats()["0"].from_journal == 6);
    CHECK(sail_requests(fx.emu) == before); // not one request
    // The completer still holds the run: close() releases the journal.
    REQUIRE_FALSE((*run)->close());
  }
  {
    // Reopened again, the same step with another model: its first call is
    // refused.
    auto run = rollout::durable_run::open(path);
    REQUIRE(run);
    auto other = fx.rt->make_durable_completer(toy("emulator/other"), {*run, "0", std::nullopt, std::nullopt});
    REQUIRE(other);
    auto refused = run_step(fx.sys, *other);
    REQUIRE_FALSE(refused.group);
    CHECK(code_of(refused.group.error()) == errc::invalid_argument);
    REQUIRE(info_of(refused.group.error()) != nullptr);
    CHECK(info_of(refused.group.error())->field == "model");
    CHECK(sail_requests(fx.emu) == before); // nothing sent
    REQUIRE_FALSE((*run)->close());
  }
  // A journal without its committer thread would never report a commit.
  auto foreground = rollout::durable_run::open(path, std::nullopt,
                                               rollout::journal_options{1000, 50ms, false, false});
  REQUIRE_FALSE(foreground);
  REQUIRE(info_of(foreground.error()) != nullptr);
  CHECK(info_of(foreground.error())->field == "background");
  // A run id that differs from the journal's is refused.
  auto wrong = rollout::durable_run::open(path, std::string{"another-run"});
  REQUIRE_FALSE(wrong);
  REQUIRE(info_of(wrong.error()) != nullptr);
  CHECK(info_of(wrong.error())->field == "run_id");
}

TEST_CASE("durable run: a durable front over any target refuses a configuration validate() "
          "refuses, naming the field, before anything is journaled or sent",
          "[durable]") {
  // The encoder keeps wire invariants only; the input rules are validate()'s,
  // which spawn_durable_completer runs itself (a step sampler or a cluster
  // wraps targets that never saw this configuration).
  stack_fixture fx;
  temp_dir dir{"durable-refused"};
  auto run = rollout::durable_run::open(dir.file("run.journal"));
  REQUIRE(run);
  auto target = fx.rt->make_completer(toy());
  REQUIRE(target);
  auto before = sail_requests(fx.emu);
  struct bad_case {
    const char* field;
    std::function<void(completer_config&)> spoil;
  };
  std::vector<bad_case> cases{
    {"model", [](completer_config& c) { c.model.clear(); }},
    {"max_tokens", [](completer_config& c) { c.max_tokens = 0; }},
    {"metadata.completion_webhook",
     [](completer_config& c) { c.metadata = {{"completion_webhook", "https://x/y"}}; }},
    {"voyage.id", [](completer_config& c) { c.voyage = voyage{"", std::nullopt, std::nullopt}; }},
  };
  for (auto& bad : cases) {
    INFO(bad.field);
    auto cfg = toy();
    bad.spoil(cfg);
    auto c = spawn_durable_completer(fx.sys, *target, cfg, {*run, "0", std::nullopt, std::nullopt});
    REQUIRE_FALSE(c);
    CHECK(code_of(c.error()) == errc::invalid_argument);
    REQUIRE(info_of(c.error()) != nullptr);
    CHECK(info_of(c.error())->field == bad.field);
  }
  CHECK(sail_requests(fx.emu) == before);
  CHECK((*run)->stats().empty());
  REQUIRE_FALSE((*run)->close());
}

TEST_CASE("durable run: the journal holds the exact body before the create, the step and "
          "the version label are journaled",
          "[durable]") {
  stack_fixture fx;
  temp_dir dir{"durable-body"};
  auto path = dir.file("run.journal");
  {
    auto run = rollout::durable_run::open(path, std::string{"body-run"});
    REQUIRE(run);
    auto c = fx.rt->make_durable_completer(toy(), {*run, "7", std::string{"ckpt-7"}, std::nullopt});
    REQUIRE(c);
    caf::scoped_actor self{fx.sys};
    sample_request s;
    s.prompt = model_input{{1, 2, 3}};
    bool ok = false;
    self->request(*c, 30s, atom::sample_v, s)
      .receive([&](tokens_with_logprobs&) { ok = true; }, [&](caf::error&) {});
    REQUIRE(ok);
    REQUIRE_FALSE((*run)->close());
  }
  // Create bodies (signed URLs included) are for the owner's eyes only.
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all)
        == (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  auto j = rollout::journal::open(path);
  REQUIRE(j);
  auto rows = (*j)->samples("7");
  REQUIRE(rows);
  REQUIRE(rows->size() == 1);
  auto& row = rows->front();
  CHECK(row.version == "ckpt-7");
  CHECK(row.state == rollout::sample_state::completed);
  // The bytes Sail received under the key are the journaled ones.
  bool found = false;
  for (auto& e : fx.emu.request_log())
    if (e.route == "POST /v1/responses" && e.header("Idempotency-Key") == row.key) {
      CHECK(e.request_body == row.request);
      found = true;
    }
  CHECK(found);
}

TEST_CASE("durable run: a journal of schema 1 is upgraded when opened", "[durable]") {
  temp_dir dir{"durable-schema"};
  auto path = dir.file("old.journal");
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) "
                         "WITHOUT ROWID;"
                         "CREATE TABLE samples (prompt_id TEXT NOT NULL, member INTEGER NOT "
                         "NULL, key TEXT NOT NULL, response_id TEXT, state INTEGER NOT NULL, "
                         "body TEXT, PRIMARY KEY (prompt_id, member)) WITHOUT ROWID;"
                         "CREATE TABLE prompts (prompt_id TEXT PRIMARY KEY, written INTEGER NOT "
                         "NULL) WITHOUT ROWID;"
                         "INSERT INTO meta VALUES('schema', '1');"
                         "INSERT INTO samples VALUES('p', 0, 'k', 'resp_1', 1, NULL);",
                         nullptr, nullptr, nullptr)
            == SQLITE_OK);
    sqlite3_close(db);
  }
  auto j = rollout::journal::open(path);
  REQUIRE(j);
  auto rows = (*j)->samples("p");
  REQUIRE(rows);
  REQUIRE(rows->size() == 1);
  CHECK(rows->front().response_id == "resp_1");
  CHECK(rows->front().request.empty());
}

TEST_CASE("durable run: a C++ trainer SIGKILLed at each failpoint and run again ends with "
          "the records of an uninterrupted run, one inference per sample",
          "[durable][process]") {
  const auto& reference = reference_records();
  sail::test::emulate_process emu{{"--latency-queued-ms", "5"}};
  temp_dir dir{"durable-kills"};
  auto d = dir.path.string();
  // Each kill at a different moment of the run: a body journaled and its
  // create not sent; a create accepted and its response id not journaled;
  // inside a journal commit; then later again.
  for (auto fp : {"sample_journaled:3", "sample_accepted:5", "journal_commit:4",
                  "sample_journaled:14", "sample_accepted:9"}) {
    auto killed = run_trainer(emu.sail_env(), d, fp);
    INFO(fp << "\n" << killed.out << killed.err);
    CHECK(killed.term_signal == SIGKILL);
  }
  auto done = run_trainer(emu.sail_env(), d);
  INFO(done.out << done.err);
  REQUIRE(done.exit_code == 0);
  CHECK(sail::test::read_file(dir.file("records.txt")) == reference);
  auto st = emu.stats(true);
  CHECK(number(st, "inference_runs_total") == trainer_samples);
  CHECK(number(st, "max_runs_per_key") == 1);
  // Finished: run again, every sample comes from the journal, no request.
  auto before = emu.requests_to("POST /v1/responses") + emu.requests_to("GET /v1/responses/{id}");
  auto again = run_trainer(emu.sail_env(), d);
  INFO(again.out << again.err);
  REQUIRE(again.exit_code == 0);
  CHECK(again.out.find("fresh 0, journal 48, reattached 0, resent 0, failed 0")
        != std::string::npos);
  CHECK(sail::test::read_file(dir.file("records.txt")) == reference);
  CHECK(emu.requests_to("POST /v1/responses") + emu.requests_to("GET /v1/responses/{id}")
        == before);
}

TEST_CASE("durable run: the trainer through two service nodes, one SIGKILLed, then the "
          "trainer killed and run again: the same records, one inference per sample",
          "[durable][process][nodes]") {
  const auto& reference = reference_records();
  sail::test::emulate_process emu{{"--latency-queued-ms", "100"}};
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
  auto list = addresses[0] + "," + addresses[1];
  temp_dir dir{"durable-nodes"};
  auto d = dir.path.string();
  {
    // Step 0 finishes on both nodes; then a node dies (its samples are
    // re-routed with their keys and bodies) and the trainer is killed in
    // step 1, at its 20th accepted create.
    process_options topts;
    topts.env = sail::test::clean_env();
    topts.env["SAIL_TINKER_FAILPOINT"] = "sample_accepted:20";
    subprocess trainer{trainer_binary(),
                       {"--journal", d + "/run.journal", "--run-id", "trainer-run", "--out",
                        d + "/records.txt", "--nodes", list},
                       topts};
    auto step0 = trainer.wait_for_line("step 0 done", 60s);
    INFO(trainer.out() << trainer.err());
    CHECK(step0);
    nodes[0]->signal(SIGKILL);
    auto killed = trainer.wait(120s);
    INFO(killed.out << killed.err);
    CHECK(killed.term_signal == SIGKILL);
  }
  auto done = run_trainer(sail::test::clean_env(), d, {}, addresses[1]);
  INFO(done.out << done.err);
  REQUIRE(done.exit_code == 0);
  CHECK(sail::test::read_file(dir.file("records.txt")) == reference);
  auto st = emu.stats(true);
  CHECK(number(st, "inference_runs_total") == trainer_samples);
  CHECK(number(st, "max_runs_per_key") == 1);
}
