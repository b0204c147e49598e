// A third-party client against the emulator: the official `openai` npm
// package runs responses.create({background: true, raw_prompt_tokens, ...})
// and responses.retrieve(id) against the emulator over loopback.
//
// The package is installed once into <build>/npm-openai (a temporary folder
// renamed into place when complete, so an interrupted install is never
// reused); later runs reuse it. The install is bounded by `timeout`. The test
// is skipped only when npm is missing.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include <boost/json.hpp>

#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace emu = sail::emulator;

namespace {

// Runs `cmd` through the shell, returns its exit status and stdout.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe)
    return {-1, {}};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0)
    out.append(buf.data(), n);
  int status = ::pclose(pipe);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {code, out};
}

std::string slurp(const fs::path& p) {
  std::ifstream in{p};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& s, size_t n = 3000) {
  return s.size() <= n ? s : s.substr(s.size() - n);
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

bool have_npm() {
  return run("command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1"
             " && npm --version >/dev/null 2>&1")
           .first
         == 0;
}

// Installs openai into the build tree once; the folder holding node_modules,
// or an empty path (with `log` set) on failure.
fs::path install_openai(std::string& log) {
  fs::path cache = fs::path{sail::test::binary_dir} / "npm-openai";
  if (fs::exists(cache / "node_modules" / "openai" / "package.json"))
    return cache;
  fs::path tmp = fs::path{sail::test::binary_dir}
                 / ("npm-openai.tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  {
    std::ofstream pkg{tmp / "package.json"};
    pkg << R"({"name":"sail-tinker-openai-npm-test","private":true})" << '\n';
  }
  auto logfile = tmp / "npm-install.log";
  auto cmd = "cd " + quote(tmp.string())
             + " && timeout 300 npm install --no-audit --no-fund --no-progress"
               " --loglevel=error openai > "
             + quote(logfile.string()) + " 2>&1";
  auto [code, out] = run(cmd);
  if (code != 0
      || !fs::exists(tmp / "node_modules" / "openai" / "package.json")) {
    log = "npm install failed (exit " + std::to_string(code)
          + "): " + tail(slurp(logfile));
    fs::remove_all(tmp, ec);
    return {};
  }
  fs::remove_all(cache, ec);
  fs::rename(tmp, cache, ec);
  if (ec) {
    // Another run won the race: use its folder.
    fs::remove_all(tmp, ec);
  }
  return cache;
}

} // namespace

TEST_CASE("the official openai npm client drives the emulator") {
  if (!have_npm()) {
    WARN("SKIPPED: npm (or node) is not installed; the openai npm client test "
         "needs it");
    return;
  }
  std::string log;
  auto dir = install_openai(log);
  if (dir.empty())
    FAIL(sail::redact_secrets(log));
  std::string version = "?";
  {
    boost::system::error_code vec;
    auto pkg = json::parse(
      slurp(dir / "node_modules" / "openai" / "package.json"), vec);
    if (!vec && pkg.is_object() && pkg.as_object().contains("version"))
      version = json::value_to<std::string>(pkg.as_object().at("version"));
  }
  INFO("openai npm package " << version);

  emu::options opts;
  opts.latency.priority.queued = std::chrono::milliseconds{20};
  opts.latency.priority.per_token = std::chrono::milliseconds{2};
  emu::server server{opts};
  auto script = fs::path{sail::test::source_dir} / "tests" / "npm"
                / "openai_responses.cjs";
  auto errfile = dir / ("node-stderr-" + std::to_string(::getpid()) + ".log");
  auto cmd = "OPENAI_PKG_DIR=" + quote(dir.string())
             + " EMU_BASE_URL=" + quote(server.base_url() + "/v1")
             + " EMU_API_KEY=" + quote(opts.sail_api_key)
             + " timeout 120 node " + quote(script.string()) + " 2> "
             + quote(errfile.string());
  auto [code, out] = run(cmd);
  auto err = slurp(errfile);
  std::error_code ignored;
  fs::remove(errfile, ignored);
  INFO("node stdout: " << sail::redact_secrets(tail(out)));
  INFO("node stderr: " << sail::redact_secrets(tail(err)));
  REQUIRE(code == 0);

  boost::system::error_code ec;
  auto parsed = json::parse(out, ec);
  REQUIRE_FALSE(ec);
  auto& o = parsed.as_object();
  CHECK(o.at("created_status") == "queued");
  CHECK(o.at("id") == o.at("created_id"));
  CHECK(o.at("status") == "completed");
  CHECK(o.at("stop_reason") == "length");

  // The same sample the toy model gives for this prompt.
  emu::sample_params p;
  p.prompt = {151644, 872, 198};
  p.model = "emulator/toy";
  p.max_output_tokens = 8;
  auto expected = emu::sample(p, opts.seed);
  std::vector<int64_t> ids;
  for (auto& x : o.at("token_ids").as_array())
    ids.push_back(x.as_int64());
  CHECK(ids == expected.token_ids);
  CHECK(o.at("logprobs").as_array().size() == 8);
  CHECK(o.at("text") == json::value(expected.text));
  if (o.contains("output_text") && o.at("output_text").is_string())
    CHECK(o.at("output_text") == json::value(expected.text));
  CHECK(o.at("usage").as_object().at("output_tokens") == 8);

  auto st = server.snapshot();
  CHECK(st.count("POST /v1/responses", 202) == 1);
  CHECK(st.count("GET /v1/responses/{id}", 200) >= 1);
  CHECK(st.inference_runs_total == 1);
}
