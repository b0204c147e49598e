// A third-party client against the emulator: the official `openai` npm
// package runs responses.create({background: true, raw_prompt_tokens, ...})
// and responses.retrieve(id) against the emulator over loopback.
//
// The package is installed once into <build>/npm-openai (a temporary folder
// renamed into place when complete, so an interrupted install is never
// reused); later runs reuse it. The install is bounded by `timeout`. A
// machine without npm/node FAILS the test (scripts/setup installs them); set
// SAIL_TINKER_NO_NPM=1 to opt out explicitly.
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
#include "support/npm.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace emu = sail::emulator;

using sail::test::have_npm;
using sail::test::shell_quote;
using sail::test::slurp_file;
using sail::test::tail_of;

TEST_CASE("the official openai npm client drives the emulator") {
  if (sail::test::npm_opted_out()) {
    WARN("SAIL_TINKER_NO_NPM is set: the openai npm client test did not run");
    return;
  }
  if (!have_npm())
    FAIL(sail::test::npm_missing_message("the openai npm client test"));
  std::string log;
  auto dir = sail::test::npm_install_cached("npm-openai", {"openai"}, log);
  if (dir.empty())
    FAIL(sail::redact_secrets(log));
  std::string version = "?";
  {
    boost::system::error_code vec;
    auto pkg = json::parse(
      slurp_file(dir / "node_modules" / "openai" / "package.json"), vec);
    if (!vec && pkg.is_object() && pkg.as_object().contains("version"))
      version = json::value_to<std::string>(pkg.as_object().at("version"));
  }
  INFO("openai npm package " << version);

  emu::options opts;
  opts.request_log_capacity = 1000;
  opts.latency.priority.queued = std::chrono::milliseconds{20};
  opts.latency.priority.per_token = std::chrono::milliseconds{2};
  emu::server server{opts};
  auto script = fs::path{sail::test::source_dir} / "tests" / "npm"
                / "openai_responses.cjs";
  auto errfile = dir / ("node-stderr-" + std::to_string(::getpid()) + ".log");
  auto cmd = "OPENAI_PKG_DIR=" + shell_quote(dir.string())
             + " EMU_BASE_URL=" + shell_quote(server.base_url() + "/v1")
             + " EMU_API_KEY=" + shell_quote(opts.sail_api_key)
             + " timeout 120 node " + shell_quote(script.string()) + " 2> "
             + shell_quote(errfile.string());
  auto [code, out] = sail::test::run_shell(cmd);
  auto err = slurp_file(errfile);
  std::error_code ignored;
  fs::remove(errfile, ignored);
  INFO("node stdout: " << sail::redact_secrets(tail_of(out)));
  INFO("node stderr: " << sail::redact_secrets(tail_of(err)));
  REQUIRE(code == 0);

  boost::system::error_code ec;
  auto parsed = json::parse(out, ec);
  REQUIRE_FALSE(ec);
  auto& o = parsed.as_object();
  CHECK(o.at("created_status") == "queued");
  CHECK(o.at("id") == o.at("created_id"));
  CHECK(o.at("status") == "completed");
  CHECK(o.at("stop_reason") == "length");

  // The same sample the toy model gives for this prompt under the
  // Idempotency-Key the package sent (it sends one with every POST; the
  // model mixes it in).
  std::string key;
  for (auto& e : server.request_log())
    if (e.method == "POST")
      key = e.header("Idempotency-Key");
  INFO("Idempotency-Key sent by the package: " << (key.empty() ? "none" : key));
  emu::sample_params p;
  p.prompt = {151644, 872, 198};
  p.model = "emulator/toy";
  p.max_output_tokens = 8;
  p.idempotency_key = key;
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
