// The rollout's files: the prompts reader and validator (every rule of the
// input rules of docs/operations.md "The rollout run", with its message), and the
// samples file (line format, meta copied byte for byte, the writer, torn-line
// repair).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/keys.hpp"
#include "sail_tinker/rollout/prompts_file.hpp"
#include "sail_tinker/rollout/samples_file.hpp"
#include "support/temp_dir.hpp"

using namespace sail;
using namespace sail::rollout;
namespace fs = std::filesystem;
using sail::test::read_file;
using sail::test::temp_dir;

namespace {

/// The message of a parse_prompt_line error (fails the test if it parsed).
std::string error_of(const std::string& line, const prompt_limits& limits = {}) {
  auto res = parse_prompt_line(line, 7, limits);
  INFO(line);
  REQUIRE_FALSE(res);
  REQUIRE(code_of(res.error()) == errc::invalid_argument);
  return info_of(res.error())->message;
}

caf::expected<input_summary> validate_text(const temp_dir& dir, const std::string& content,
                                           uint32_t default_n = 1) {
  auto path = dir.write("in.jsonl", content);
  auto in = prompts_reader::open(path);
  REQUIRE(in);
  return validate_prompts(**in, prompt_limits{}, default_n);
}

} // namespace

TEST_CASE("prompts: a full line parses, meta is kept byte for byte", "[prompts]") {
  std::string line = R"({"id":"p-1","prompt":[0,5,2147483647],"n":4,"max_tokens":64,)"
                     R"("stop":[2,0],"meta":{ "label" : "x\u00e9", "w": [1.50, null ] }})";
  auto p = parse_prompt_line(line, 3);
  REQUIRE(p);
  CHECK(p->line == 3);
  CHECK(p->id == "p-1");
  CHECK(p->prompt == std::vector<int64_t>{0, 5, 2147483647});
  CHECK(p->n == 4u);
  CHECK(p->max_tokens == 64);
  CHECK(p->stop.token_ids == std::vector<int64_t>{2, 0});
  REQUIRE(p->meta);
  CHECK(*p->meta == R"({ "label" : "x\u00e9", "w": [1.50, null ] })");
  // Every other JSON value kind as meta; keys in any order; no optional keys.
  for (auto meta : {R"("a \"quoted\" } string")", "1.50", "-0", "null", "true", "[]",
                    R"([{"a":[]},"]"])"}) {
    auto q = parse_prompt_line(std::string{R"({"meta":)"} + meta + R"(,"prompt":[1],"id":"x"})", 1);
    REQUIRE(q);
    REQUIRE(q->meta);
    CHECK(*q->meta == meta);
  }
  auto minimal = parse_prompt_line(R"({"id":"x","prompt":[1]})", 1);
  REQUIRE(minimal);
  CHECK_FALSE(minimal->n);
  CHECK_FALSE(minimal->max_tokens);
  CHECK(minimal->stop.empty());
  CHECK_FALSE(minimal->meta);
}

TEST_CASE("prompts: stop takes an int, [int], a string or [string]", "[prompts]") {
  auto one = parse_prompt_line(R"({"id":"x","prompt":[1],"stop":7})", 1);
  REQUIRE(one);
  CHECK(one->stop.token_ids == std::vector<int64_t>{7});
  auto text = parse_prompt_line(R"({"id":"x","prompt":[1],"stop":"END"})", 1);
  REQUIRE(text);
  CHECK(text->stop.strings == std::vector<std::string>{"END"});
  auto texts = parse_prompt_line(R"({"id":"x","prompt":[1],"stop":["\n","END"]})", 1);
  REQUIRE(texts);
  CHECK(texts->stop.strings == std::vector<std::string>{"\n", "END"});
  auto none = parse_prompt_line(R"({"id":"x","prompt":[1],"stop":[]})", 1);
  REQUIRE(none);
  CHECK(none->stop.empty());
}

TEST_CASE("prompts: every invalid line names its line and field", "[prompts]") {
  struct bad_case {
    std::string line;
    std::string message;
  };
  std::string long_id(129, 'x');
  std::string ok_id(128, 'y');
  // 128 two-byte characters are 128 characters, not 256.
  std::string utf8_id;
  for (int i = 0; i < 128; ++i)
    utf8_id += "\xc3\xa9";
  REQUIRE(parse_prompt_line(R"({"id":")" + ok_id + R"(","prompt":[1]})", 1));
  REQUIRE(parse_prompt_line(R"({"id":")" + utf8_id + R"(","prompt":[1]})", 1));
  std::vector<bad_case> cases{
    {"not json", "input:7: line: not valid JSON"},
    {R"({"id":"x","prompt":[1])", "input:7: line: not valid JSON"},
    {R"([1,2])", "input:7: line: expected a JSON object"},
    {R"("text")", "input:7: line: expected a JSON object"},
    {R"({"prompt":[1]})", "input:7: id: missing"},
    {R"({"id":5,"prompt":[1]})", "input:7: id: expected a string"},
    {R"({"id":"","prompt":[1]})", "input:7: id: must be 1..128 characters, got 0"},
    {R"({"id":")" + long_id + R"(","prompt":[1]})", "input:7: id: must be 1..128 characters, got 129"},
    {R"({"id":"x"})", "input:7: prompt: missing"},
    {R"({"id":"x","prompt":"1,2"})", "input:7: prompt: expected an array of token ids"},
    {R"({"id":"x","prompt":[]})", "input:7: prompt: must not be empty"},
    {R"({"id":"x","prompt":[1,"2"]})", "input:7: prompt: item 1 is not an integer"},
    {R"({"id":"x","prompt":[1,2.0]})", "input:7: prompt: item 1 is not an integer"},
    {R"({"id":"x","prompt":[1,1e3]})", "input:7: prompt: item 1 is not an integer"},
    {R"({"id":"x","prompt":[-1]})", "input:7: prompt: token id -1 (item 0) is outside 0..2147483647"},
    {R"({"id":"x","prompt":[2147483648]})",
     "input:7: prompt: token id 2147483648 (item 0) is outside 0..2147483647"},
    {R"({"id":"x","prompt":[18446744073709551615]})", "input:7: prompt: token id"},
    {R"({"id":"x","prompt":[1],"n":0})", "input:7: n: must be within 1..4096"},
    {R"({"id":"x","prompt":[1],"n":4097})", "input:7: n: must be within 1..4096"},
    {R"({"id":"x","prompt":[1],"n":"2"})", "input:7: n: expected an integer"},
    {R"({"id":"x","prompt":[1],"n":1.5})", "input:7: n: expected an integer"},
    {R"({"id":"x","prompt":[1],"max_tokens":0})", "input:7: max_tokens: must be >= 1"},
    {R"({"id":"x","prompt":[1],"max_tokens":null})", "input:7: max_tokens: expected an integer"},
    {R"({"id":"x","prompt":[1],"stop":[1,"a"]})", "input:7: stop: mixes token ids and strings"},
    {R"({"id":"x","prompt":[1],"stop":""})", "input:7: stop: stop strings must not be empty"},
    {R"({"id":"x","prompt":[1],"stop":-3})", "input:7: stop: stop token -3 is outside 0..2147483647"},
    {R"({"id":"x","prompt":[1],"stop":{"a":1}})",
     "input:7: stop: expected an int, a string, or a list of either"},
    {R"({"id":"x","prompt":[1],"stop":[true]})",
     "input:7: stop: expected an int, a string, or a list of either"},
    {R"({"id":"x","prompt":[1],"temperature":0.5})",
     "input:7: temperature: unknown key (allowed: id, prompt, n, max_tokens, stop, meta)"},
    {R"({"id":"x","prompt":[1],"id":"y"})", "input:7: id: key appears twice"},
  };
  for (auto& c : cases) {
    auto msg = error_of(c.line);
    INFO(c.line << "\n -> " << msg);
    CHECK(msg.compare(0, c.message.size(), c.message) == 0);
  }
  // The field of the error is the offending key.
  auto res = parse_prompt_line(R"({"id":"x","prompt":[1],"n":0})", 1);
  REQUIRE_FALSE(res);
  CHECK(info_of(res.error())->field == "n");
  // n beyond the configured largest group; nesting beyond the depth limit.
  prompt_limits small;
  small.max_group_size = 8;
  CHECK(error_of(R"({"id":"x","prompt":[1],"n":9})", small)
        == "input:7: n: must be within 1..8");
  std::string deep = R"({"id":"x","prompt":[1],"meta":)" + std::string(100, '[')
                     + std::string(100, ']') + "}";
  CHECK(error_of(deep).compare(0, 28, "input:7: line: not valid JSO") == 0);
}

TEST_CASE("prompts: a prompt of 2,000,000 tokens passes, one more does not", "[prompts]") {
  std::string max_line = R"({"id":"big","prompt":[)";
  max_line.reserve(4'100'000);
  for (size_t i = 0; i < 2'000'000; ++i) {
    if (i > 0)
      max_line += ',';
    max_line += '1';
  }
  auto over = max_line + ",1]}";
  max_line += "]}";
  auto ok = parse_prompt_line(max_line, 1);
  REQUIRE(ok);
  CHECK(ok->prompt.size() == 2'000'000);
  CHECK(error_of(over) == "input:7: prompt: has 2000001 tokens, at most 2000000 allowed");
}

TEST_CASE("prompts: the validation pass counts, fingerprints and rewinds", "[prompts]") {
  temp_dir dir{"validate"};
  std::string content = "{\"id\":\"a\",\"prompt\":[1],\"n\":3}\n"
                        "\n"
                        "   \r\n"
                        "{\"id\":\"b\",\"prompt\":[2]}\r\n"
                        "{\"id\":\"c\",\"prompt\":[3]}"; // no final line break
  auto sum = validate_text(dir, content, 2);
  REQUIRE(sum);
  CHECK(sum->lines == 5);
  CHECK(sum->prompts == 3);
  CHECK(sum->samples == 3 + 2 + 2);
  CHECK(sum->sha256 == sha256_hex(content));
  // Blank lines are skipped when reading for the run; numbers are physical.
  auto in = prompts_reader::open(dir.file("in.jsonl"));
  REQUIRE(in);
  std::vector<std::pair<uint64_t, std::string>> seen;
  std::string_view text;
  uint64_t line = 0;
  for (;;) {
    auto more = (*in)->next(text, line);
    REQUIRE(more);
    if (!*more)
      break;
    seen.emplace_back(line, std::string{text});
  }
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].first == 1);
  CHECK(seen[1] == std::make_pair(uint64_t{4}, std::string{R"({"id":"b","prompt":[2]})"}));
  CHECK(seen[2].first == 5);
  // One changed byte changes the fingerprint.
  auto other = validate_text(dir, content.substr(0, content.size() - 3) + "4]}");
  REQUIRE(other);
  CHECK(other->sha256 != sum->sha256);
}

TEST_CASE("prompts: duplicates name both lines, the earliest error wins", "[prompts]") {
  temp_dir dir{"dups"};
  std::string lines;
  for (int i = 0; i < 50; ++i)
    lines += R"({"id":"p)" + std::to_string(i) + R"(","prompt":[1]})" + "\n";
  auto dup = validate_text(dir, lines + R"({"id":"p17","prompt":[2]})" + "\n");
  REQUIRE_FALSE(dup);
  CHECK(info_of(dup.error())->message == "input:51: id: duplicate id \"p17\" (first on line 18)");
  CHECK(info_of(dup.error())->field == "id");
  // A duplicate before an invalid line is reported, not the invalid line...
  auto first_dup = validate_text(dir, lines + R"({"id":"p3","prompt":[2]})" + "\n"
                                        + R"({"id":"q","prompt":[-1]})" + "\n");
  REQUIRE_FALSE(first_dup);
  CHECK(info_of(first_dup.error())->message.compare(0, 13, "input:51: id:") == 0);
  // ...and an invalid line before a duplicate is.
  auto first_bad = validate_text(dir, lines + R"({"id":"q","prompt":[-1]})" + "\n"
                                        + R"({"id":"p3","prompt":[2]})" + "\n");
  REQUIRE_FALSE(first_bad);
  CHECK(info_of(first_bad.error())->message.compare(0, 17, "input:51: prompt:") == 0);
  auto empty = validate_text(dir, "");
  REQUIRE(empty);
  CHECK(empty->prompts == 0);
  auto missing = prompts_reader::open(dir.file("nope.jsonl"));
  REQUIRE_FALSE(missing);
  CHECK(code_of(missing.error()) == errc::io_error);
}

// -- samples file -----------------------------------------------------------------------

TEST_CASE("samples: results, errors and lines are formatted as the contract says",
          "[samples]") {
  tokens_with_logprobs r{{5, 9}, std::vector<double>{-0.1, -2.3}, "stop"};
  CHECK(format_result(r)
        == R"({"tokens":[5,9],"logprobs":[-0.1,-2.3],"stop_reason":"stop","usage":null})");
  tokens_with_logprobs none{{1}, std::nullopt, "length"};
  CHECK(format_result(none)
        == R"({"tokens":[1],"logprobs":null,"stop_reason":"length","usage":null})");
  // Billed usage, and its cost when priced; parse_result_usage reads it back
  // (what a resume and the report take from the journal).
  tokens_with_logprobs billed{{1}, std::nullopt, "stop", sample_usage{10, 4, 1, 0}};
  auto text = format_result(billed, 0.25);
  CHECK(text
        == R"({"tokens":[1],"logprobs":null,"stop_reason":"stop","usage":{"input_tokens":10,)"
           R"("cached_tokens":4,"output_tokens":1,"reasoning_tokens":0},"cost_usd":0.25})");
  CHECK(parse_result_usage(text) == sample_usage{10, 4, 1, 0});
  CHECK(parse_result_usage(format_result(none)) == std::nullopt);
  CHECK(parse_result_usage(R"({"tokens":[1],"logprobs":null,"stop_reason":"stop"})")
        == std::nullopt);
  CHECK(parse_result_usage(R"({"usage":{"input_tokens":-1,"cached_tokens":0,)"
                           R"("output_tokens":1,"reasoning_tokens":0}})")
        == std::nullopt);
  auto e = format_error(make_error(errc::timeout, "sample deadline \"expired\""));
  CHECK(e == R"({"error":{"kind":"timeout","message":"sample deadline \"expired\""}})");
  auto secret = format_error(http_error(401, "", "bad key sk_live_0123456789abcdef0123"));
  CHECK(secret.find("0123456789abcdef0123") == std::string::npos);
  auto line = format_line("p\"1", {format_result(r), e}, std::string{R"({ "k" : 1.50 })"});
  CHECK(line
        == R"({"id":"p\"1","samples":[{"tokens":[5,9],"logprobs":[-0.1,-2.3],"stop_reason":"stop",)"
           R"("usage":null},)"
           R"({"error":{"kind":"timeout","message":"sample deadline \"expired\""}}],"meta":{ "k" : 1.50 }})");
  CHECK(format_line("x", {}, std::nullopt) == R"({"id":"x","samples":[]})");
  boost::json::error_code ec;
  boost::json::parse(line, ec);
  CHECK_FALSE(ec);
}

TEST_CASE("samples: the writer appends, syncs and reports its size", "[samples]") {
  temp_dir dir{"writer"};
  auto path = dir.file("out.jsonl");
  {
    auto w = samples_writer::open(path);
    REQUIRE(w);
    CHECK((*w)->size() == 0);
    REQUIRE_FALSE((*w)->append(R"({"id":"a","samples":[]})"));
    CHECK((*w)->size() == 24);
    REQUIRE_FALSE((*w)->sync());
    CHECK(read_file(path) == "{\"id\":\"a\",\"samples\":[]}\n");
    REQUIRE_FALSE((*w)->append(R"({"id":"b","samples":[]})"));
  }
  auto w = samples_writer::open(path); // appends to what is there
  REQUIRE(w);
  CHECK((*w)->size() == 48);
  auto denied = samples_writer::open(dir.file("no/such/dir/out.jsonl"));
  REQUIRE_FALSE(denied);
  CHECK(code_of(denied.error()) == errc::io_error);
}

TEST_CASE("samples: repair reports lines after the offset and cuts a torn tail", "[samples]") {
  temp_dir dir{"repair"};
  std::string a = R"({"id":"a","samples":[]})";
  std::string b = R"({"id":"b","samples":[{"tokens":[1],"logprobs":null,"stop_reason":"stop"}]})";
  auto path = dir.write("out.jsonl", a + "\n" + b + "\n" + R"({"id":"c","sam)");
  std::vector<std::string> ids;
  auto collect = [&](std::string_view id) -> caf::error {
    ids.emplace_back(id);
    return caf::none;
  };
  auto res = repair_samples_file(path, a.size() + 1, collect);
  REQUIRE(res);
  CHECK(ids == std::vector<std::string>{"b"});
  CHECK(res->lines == 1);
  CHECK(res->torn_bytes == 14);
  CHECK(res->size == a.size() + b.size() + 2);
  CHECK(read_file(path) == a + "\n" + b + "\n");
  // Nothing after the offset, nothing torn: a no-op.
  ids.clear();
  res = repair_samples_file(path, res->size, collect);
  REQUIRE(res);
  CHECK(ids.empty());
  CHECK(res->torn_bytes == 0);
  // From 0 every line is reported.
  res = repair_samples_file(path, 0, collect);
  REQUIRE(res);
  CHECK(ids == std::vector<std::string>{"a", "b"});
  // A missing file is empty; with a positive offset it is an error.
  REQUIRE(repair_samples_file(dir.file("none.jsonl"), 0, collect));
  auto gone = repair_samples_file(dir.file("none.jsonl"), 10, collect);
  REQUIRE_FALSE(gone);
  CHECK(code_of(gone.error()) == errc::invalid_argument);
  CHECK(info_of(gone.error())->field == "output");
  // Shorter than the offset, an offset inside a line, a foreign line.
  auto shorter = repair_samples_file(path, 1000, collect);
  REQUIRE_FALSE(shorter);
  CHECK(info_of(shorter.error())->message.find("shorter") != std::string::npos);
  auto inside = repair_samples_file(path, 5, collect);
  REQUIRE_FALSE(inside);
  CHECK(info_of(inside.error())->message.find("not at a line start") != std::string::npos);
  auto foreign = dir.write("foreign.jsonl", "hello world\n");
  auto bad = repair_samples_file(foreign, 0, collect);
  REQUIRE_FALSE(bad);
  CHECK(info_of(bad.error())->message.find("not a samples line") != std::string::npos);
  // An error from the callback stops the repair.
  auto stop = repair_samples_file(path, 0, [](std::string_view) -> caf::error {
    return make_error(errc::io_error, "journal full");
  });
  REQUIRE_FALSE(stop);
  CHECK(code_of(stop.error()) == errc::io_error);
}

TEST_CASE("prompts: standard input is spooled to an unlinked file", "[prompts]") {
  temp_dir dir{"spool"};
  auto src = dir.write("src.jsonl", "{\"id\":\"a\",\"prompt\":[1]}\n");
  int saved = ::dup(STDIN_FILENO);
  int fd_in = ::open(src.c_str(), O_RDONLY);
  REQUIRE(fd_in >= 0);
  ::dup2(fd_in, STDIN_FILENO);
  ::close(fd_in);
  auto fd = spool_stdin(dir.path.string());
  ::dup2(saved, STDIN_FILENO);
  ::close(saved);
  REQUIRE(fd);
  // Nothing but src.jsonl is left in the directory.
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir.path)) {
    static_cast<void>(e);
    ++files;
  }
  CHECK(files == 1);
  auto in = prompts_reader::adopt(*fd, "standard input");
  REQUIRE(in);
  auto sum = validate_prompts(**in, prompt_limits{}, 1);
  REQUIRE(sum);
  CHECK(sum->prompts == 1);
  CHECK(sum->sha256 == sha256_hex(read_file(src)));
}
