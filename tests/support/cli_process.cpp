#include "support/cli_process.hpp"

#include <chrono>
#include <csignal>
#include <regex>

#include <catch2/catch.hpp>

#include "support/paths.hpp"
#include "support/sync_http.hpp"

namespace sail::test {

using namespace std::chrono_literals;

std::string cli_binary() {
  return std::string{binary_dir} + "/sail-tinker";
}

env_map clean_env() {
  return {{"SAIL_API_KEY", std::nullopt},   {"SAIL_BASE_URL", std::nullopt},
          {"SAIL_API_URL", std::nullopt},   {"SAIL_MODE", std::nullopt},
          {"TINKER_API_KEY", std::nullopt}, {"TINKER_BASE_URL", std::nullopt},
          {"http_proxy", std::nullopt},     {"https_proxy", std::nullopt},
          {"HTTP_PROXY", std::nullopt},     {"HTTPS_PROXY", std::nullopt},
          {"SAIL_TINKER_FAILPOINT", std::nullopt}};
}

emulate_process::emulate_process(std::vector<std::string> extra) {
  std::vector<std::string> args{"emulate"};
  args.insert(args.end(), extra.begin(), extra.end());
  process_options opts;
  opts.env = clean_env();
  proc = std::make_unique<subprocess>(cli_binary(), args, opts);
  auto line = proc->wait_for_line("listening on ", 30s);
  INFO("stderr: " << proc->err());
  REQUIRE(line);
  std::smatch m;
  std::regex re{R"(^listening on (http://127\.0\.0\.1:(\d+))$)"};
  REQUIRE(std::regex_match(*line, m, re));
  url = m[1];
  port = static_cast<uint16_t>(std::stoi(m[2]));
}

emulate_process::~emulate_process() {
  proc->signal(SIGTERM);
  proc->wait(15s);
}

env_map emulate_process::sail_env() const {
  auto env = clean_env();
  env["SAIL_BASE_URL"] = url;
  env["SAIL_API_KEY"] = "sk_emulator_key";
  return env;
}

env_map emulate_process::tinker_env() const {
  auto env = clean_env();
  env["TINKER_BASE_URL"] = url;
  env["TINKER_API_KEY"] = "tml-emulator-key";
  return env;
}

boost::json::value emulate_process::stats(bool summary) const {
  sync_http http{"127.0.0.1", port};
  auto res = http.get(summary ? "/_emulator/stats?summary=1" : "/_emulator/stats");
  REQUIRE(res.ok());
  return res.json();
}

uint64_t emulate_process::requests_to(const std::string& route) const {
  auto doc = stats(true);
  uint64_t n = 0;
  if (auto* r = doc.at("requests").as_object().if_contains(route))
    for (auto& [status, count] : r->as_object())
      n += count.to_number<uint64_t>();
  return n;
}

} // namespace sail::test
