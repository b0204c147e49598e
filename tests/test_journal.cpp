// The rollout journal (rollout/journal.hpp) and the key derivation
// (rollout/keys.hpp): what survives a commit and what a close without commit
// discards, grouped commits and the hook that runs before each, the
// exclusive lock, files that are not journals, and keys that fit Sail's
// Idempotency-Key rules for any prompt id.
#include <catch2/catch.hpp>

#include <filesystem>
#include <future>
#include <thread>
#include <fstream>
#include <set>
#include <string>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/journal.hpp"
#include "sail_tinker/rollout/keys.hpp"
#include "support/temp_dir.hpp"

using namespace sail;
using namespace sail::rollout;
namespace fs = std::filesystem;
using sail::test::temp_dir;

namespace {

std::unique_ptr<journal> open_or_fail(const std::string& path, journal_options opts = {}) {
  auto j = journal::open(path, opts);
  INFO((j ? std::string{} : render(j.error())));
  REQUIRE(j);
  return std::move(*j);
}

run_record sample_run() {
  return {"run-1", R"({"model":"m"})", std::string(64, 'a'), 12};
}

} // namespace

TEST_CASE("journal: a new journal has no run, start_run persists it at once", "[journal]") {
  temp_dir dir{"run"};
  auto path = dir.file("j.db");
  {
    auto j = open_or_fail(path);
    CHECK_FALSE(j->run().has_value());
    CHECK(j->empty());
    CHECK(j->output_offset() == 0);
    REQUIRE_FALSE(j->start_run(sample_run()));
    CHECK(j->pending() == 0); // committed, nothing left open
  }
  auto j = open_or_fail(path);
  REQUIRE(j->run().has_value());
  CHECK(j->run()->run_id == "run-1");
  CHECK(j->run()->config == R"({"model":"m"})");
  CHECK(j->run()->input_sha256 == std::string(64, 'a'));
  CHECK(j->run()->input_lines == 12);
}

TEST_CASE("journal: committed events survive, uncommitted ones are discarded", "[journal]") {
  temp_dir dir{"events"};
  auto path = dir.file("j.db");
  {
    auto j = open_or_fail(path);
    REQUIRE_FALSE(j->start_run(sample_run()));
    REQUIRE_FALSE(j->record_key("p1", 0, "k0"));
    REQUIRE_FALSE(j->record_accepted("p1", 1, "k1", "resp_1"));
    REQUIRE_FALSE(j->record_completed("p1", 2, "k2", R"({"tokens":[1]})"));
    REQUIRE_FALSE(j->record_accepted("p2", 0, "k3", "resp_3"));
    REQUIRE_FALSE(j->record_completed("p2", 0, "k3", R"({"tokens":[2]})"));
    REQUIRE_FALSE(j->record_written("p2", 100));
    // Lookups read the committed state only.
    CHECK_FALSE(*j->written("p2"));
    REQUIRE_FALSE(j->commit());
    CHECK(j->pending() == 0);
    CHECK(j->commits() == 2);
    CHECK(*j->written("p2"));
    CHECK(j->output_offset() == 100);
    // Not committed: lost when the journal closes (as in a crash).
    REQUIRE_FALSE(j->record_completed("p1", 1, "k1", R"({"tokens":[9]})"));
    REQUIRE_FALSE(j->record_written("p1", 200));
  }
  auto j = open_or_fail(path);
  CHECK_FALSE(j->empty());
  CHECK(j->output_offset() == 100);
  CHECK_FALSE(*j->written("p1"));
  CHECK(*j->written("p2"));
  CHECK_FALSE(*j->written("unknown"));
  auto p1 = j->samples("p1");
  REQUIRE(p1);
  REQUIRE(p1->size() == 3);
  CHECK((*p1)[0].member == 0);
  CHECK((*p1)[0].key == "k0");
  CHECK((*p1)[0].state == sample_state::pending);
  CHECK((*p1)[0].response_id.empty());
  CHECK((*p1)[1].state == sample_state::accepted);
  CHECK((*p1)[1].response_id == "resp_1");
  CHECK((*p1)[1].body.empty());
  CHECK((*p1)[2].state == sample_state::completed);
  CHECK((*p1)[2].body == R"({"tokens":[1]})");
  auto p2 = j->samples("p2");
  REQUIRE(p2);
  REQUIRE(p2->size() == 1);
  CHECK((*p2)[0].response_id == "resp_3"); // the completed row carries it
  CHECK((*p2)[0].state == sample_state::completed);
  auto sum = j->summary();
  REQUIRE(sum);
  CHECK(sum->prompts_written == 1);
  CHECK(sum->samples_completed == 1); // p1 member 2 (p2 is written)
  CHECK(sum->samples_accepted == 1);  // p1 member 1
}

TEST_CASE("journal: an accepted event never demotes a completed sample", "[journal]") {
  temp_dir dir{"demote"};
  auto j = open_or_fail(dir.file("j.db"));
  REQUIRE_FALSE(j->record_completed("p", 0, "k", "body"));
  REQUIRE_FALSE(j->commit());
  REQUIRE_FALSE(j->record_accepted("p", 0, "k", "resp"));
  REQUIRE_FALSE(j->commit());
  auto s = j->samples("p");
  REQUIRE(s);
  REQUIRE(s->size() == 1);
  CHECK((*s)[0].state == sample_state::completed);
  CHECK((*s)[0].body == "body");
  CHECK((*s)[0].response_id == "resp");
}

TEST_CASE("journal: grouped commits by count, the hook first, the offset of the batch",
          "[journal]") {
  temp_dir dir{"group"};
  journal_options opts;
  opts.background = false;
  opts.commit_every = 3;
  opts.commit_interval = std::chrono::hours(1);
  auto j = open_or_fail(dir.file("j.db"), opts);
  std::vector<std::string> order;
  j->on_commit([&]() -> caf::error {
    order.push_back("hook:" + std::to_string(j->pending()));
    return caf::none;
  });
  CHECK_FALSE(j->until_due().has_value());
  REQUIRE_FALSE(j->record_written("a", 10));
  REQUIRE(j->until_due().has_value());
  REQUIRE_FALSE(j->maybe_commit());
  REQUIRE_FALSE(j->record_written("b", 20));
  REQUIRE_FALSE(j->maybe_commit());
  CHECK(order.empty());
  CHECK(j->commits() == 0);
  REQUIRE_FALSE(j->record_written("c", 30));
  REQUIRE_FALSE(j->maybe_commit());
  // The hook ran once, before the batch was written (it was taken already).
  CHECK(order == std::vector<std::string>{"hook:0"});
  CHECK(j->commits() == 1);
  CHECK(j->output_offset() == 30);
  CHECK(*j->written("c"));
  CHECK(j->pending() == 0);
  // Nothing pending: commit() is a no-op and runs no hook.
  REQUIRE_FALSE(j->commit());
  CHECK(order.size() == 1);
  CHECK(j->commits() == 1);
  // An explicit offset (a repaired file) replaces the recorded one.
  REQUIRE_FALSE(j->set_output_offset(25));
  REQUIRE_FALSE(j->commit());
  CHECK(j->output_offset() == 25);
}

TEST_CASE("journal: an interval of zero commits at the next maybe_commit", "[journal]") {
  temp_dir dir{"interval"};
  journal_options opts;
  opts.background = false;
  opts.commit_every = 1000;
  opts.commit_interval = std::chrono::milliseconds(0);
  auto j = open_or_fail(dir.file("j.db"), opts);
  REQUIRE_FALSE(j->record_written("a"));
  CHECK(j->until_due() == std::chrono::steady_clock::duration::zero());
  REQUIRE_FALSE(j->maybe_commit());
  CHECK(j->commits() == 1);
}

TEST_CASE("journal: background commits run on their own thread, by count", "[journal]") {
  temp_dir dir{"background"};
  journal_options opts;
  opts.commit_every = 3;
  opts.commit_interval = std::chrono::hours(1);
  auto path = dir.file("j.db");
  {
    auto j = open_or_fail(path, opts);
    std::promise<std::thread::id> hook_thread;
    auto ran = hook_thread.get_future();
    bool set = false;
    j->on_commit([&]() -> caf::error {
      if (!set) {
        set = true;
        hook_thread.set_value(std::this_thread::get_id());
      }
      return caf::none;
    });
    REQUIRE_FALSE(j->record_written("a", 1));
    REQUIRE_FALSE(j->record_written("b", 2));
    REQUIRE_FALSE(j->record_written("c", 3)); // the third event wakes the committer
    REQUIRE(ran.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    CHECK(ran.get() != std::this_thread::get_id());
    CHECK_FALSE(j->until_due().has_value());
    REQUIRE_FALSE(j->commit()); // waits for the commit in progress
    CHECK(j->commits() == 1);
    CHECK(*j->written("c"));
  }
  auto j = open_or_fail(path);
  CHECK(j->output_offset() == 3);
}

TEST_CASE("journal: background commits by age", "[journal]") {
  temp_dir dir{"age"};
  journal_options opts;
  opts.commit_every = 1000;
  opts.commit_interval = std::chrono::milliseconds(1);
  auto j = open_or_fail(dir.file("j.db"), opts);
  std::promise<void> committed;
  auto done = committed.get_future();
  bool set = false;
  j->on_commit([&]() -> caf::error {
    if (!set) {
      set = true;
      committed.set_value();
    }
    return caf::none;
  });
  REQUIRE_FALSE(j->record_written("a"));
  REQUIRE(done.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  REQUIRE_FALSE(j->commit());
  CHECK(*j->written("a"));
}

TEST_CASE("journal: a failing hook aborts the commit and keeps the events", "[journal]") {
  temp_dir dir{"hookfail"};
  auto path = dir.file("j.db");
  {
    journal_options opts;
    opts.background = false;
    auto j = open_or_fail(path, opts);
    bool fail = true;
    j->on_commit([&]() -> caf::error {
      if (fail)
        return make_error(errc::io_error, "disk full");
      return caf::none;
    });
    REQUIRE_FALSE(j->record_written("a"));
    auto err = j->commit();
    CHECK(code_of(err) == errc::io_error);
    CHECK(j->pending() == 1);
    CHECK(j->commits() == 0);
    fail = false;
    REQUIRE_FALSE(j->commit());
  }
  auto j = open_or_fail(path);
  CHECK(*j->written("a"));
}

TEST_CASE("journal: in the background a failed commit is sticky", "[journal]") {
  temp_dir dir{"sticky"};
  auto j = open_or_fail(dir.file("j.db"));
  j->on_commit([]() -> caf::error { return make_error(errc::io_error, "disk full"); });
  REQUIRE_FALSE(j->record_written("a"));
  auto err = j->commit();
  CHECK(code_of(err) == errc::io_error);
  CHECK(code_of(j->maybe_commit()) == errc::io_error);
  CHECK(code_of(j->record_written("b")) == errc::io_error);
  CHECK(j->commits() == 0);
  CHECK_FALSE(*j->written("a"));
}

TEST_CASE("journal: a second owner is refused while the first holds it", "[journal]") {
  temp_dir dir{"lock"};
  auto path = dir.file("j.db");
  auto first = open_or_fail(path);
  REQUIRE_FALSE(first->start_run(sample_run()));
  auto second = journal::open(path);
  REQUIRE_FALSE(second);
  CHECK(code_of(second.error()) == errc::io_error);
  CHECK(info_of(second.error())->field == "journal");
  first.reset();
  auto third = journal::open(path);
  REQUIRE(third);
  CHECK((*third)->run()->run_id == "run-1");
}

TEST_CASE("journal: a file that is not a journal is invalid_argument", "[journal]") {
  temp_dir dir{"notajournal"};
  auto text = dir.file("notes.txt");
  {
    std::ofstream out{text};
    out << "this is not an SQLite database, just some text long enough to have a header\n";
  }
  auto j = journal::open(text);
  REQUIRE_FALSE(j);
  CHECK(code_of(j.error()) == errc::invalid_argument);
  CHECK(info_of(j.error())->message.find("not a sail-tinker journal") != std::string::npos);
  auto missing_dir = journal::open(dir.file("no/such/dir/j.db"));
  REQUIRE_FALSE(missing_dir);
  CHECK(code_of(missing_dir.error()) == errc::io_error);
}

TEST_CASE("journal: remove deletes the database and its companions", "[journal]") {
  temp_dir dir{"remove"};
  auto path = dir.file("j.db");
  {
    auto j = open_or_fail(path);
    REQUIRE_FALSE(j->start_run(sample_run()));
  }
  CHECK(fs::exists(path));
  REQUIRE_FALSE(journal::remove(path));
  CHECK_FALSE(fs::exists(path));
  CHECK_FALSE(fs::exists(path + "-wal"));
  REQUIRE_FALSE(journal::remove(path)); // missing: not an error
  auto j = open_or_fail(path);
  CHECK_FALSE(j->run().has_value());
}

// -- keys -----------------------------------------------------------------------------

TEST_CASE("keys: deterministic, distinct, within Sail's Idempotency-Key rules", "[journal][keys]") {
  auto k = sample_key("run-1", "p-1", 0);
  CHECK(k == sample_key("run-1", "p-1", 0));
  CHECK(k.size() == 68);
  CHECK(k.compare(0, 4, "st1-") == 0);
  CHECK(k != sample_key("run-1", "p-1", 1));
  CHECK(k != sample_key("run-2", "p-1", 0));
  CHECK(k != sample_key("run-1", "p-2", 0));
  // Length prefixes: moving a character between the parts changes the key.
  CHECK(sample_key("run-1", "1", 2) != sample_key("run-", "11", 2));
  CHECK(sample_key("a|b", "c", 0) != sample_key("a", "b|c", 0));
  auto g = group_key("run-1", "p-1");
  CHECK(g.compare(0, 4, "sg1-") == 0);
  CHECK(g != k);
  CHECK(g == group_key("run-1", "p-1"));
  // The documented derivation, recomputed.
  CHECK(k == "st1-" + sha256_hex("sail-tinker/rollout/v1|5:run-1|3:p-1|0"));
  CHECK(g == "sg1-" + sha256_hex("sail-tinker/rollout/v1|5:run-1|3:p-1|group"));
  // Any prompt id up to 128 characters: multi-byte UTF-8, NUL, quotes.
  std::string wild;
  for (int i = 0; i < 128; ++i)
    wild += i % 3 == 0 ? "\xe2\x82\xac" : (i % 3 == 1 ? std::string(1, '\0') : "\"");
  auto w = sample_key(new_run_id(), wild, 4095);
  CHECK(w.size() <= 255);
  for (char c : w)
    CHECK((c >= 0x20 && c < 0x7f));
  std::set<std::string> seen;
  for (uint32_t i = 0; i < 1000; ++i)
    seen.insert(sample_key("r", "p", i));
  CHECK(seen.size() == 1000);
}

TEST_CASE("keys: run ids", "[journal][keys]") {
  auto a = new_run_id();
  auto b = new_run_id();
  CHECK(a != b);
  CHECK(a.size() == 36);
  CHECK_FALSE(check_run_id(a));
  CHECK_FALSE(check_run_id("exp-7.seed:3_b"));
  for (auto bad : {std::string{}, std::string(129, 'x'), std::string{"has space"},
                   std::string{"slash/no"}, std::string{"\xc3\xa9"}}) {
    auto err = check_run_id(bad);
    CHECK(code_of(err) == errc::invalid_argument);
    CHECK(info_of(err)->field == "run-id");
  }
}

TEST_CASE("keys: incremental SHA-256 equals the one-shot digest", "[journal][keys]") {
  sha256 h;
  h.update("ab");
  h.update("");
  h.update("c");
  CHECK(h.finish() == sha256_hex("abc"));
  CHECK(sha256_hex("abc")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
