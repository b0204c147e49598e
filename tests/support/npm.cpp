#include "support/npm.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <sys/wait.h>
#include <unistd.h>

#include "support/paths.hpp"

namespace fs = std::filesystem;

namespace sail::test {

std::pair<int, std::string> run_shell(const std::string& cmd) {
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

std::string slurp_file(const fs::path& p) {
  std::ifstream in{p};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string tail_of(const std::string& s, size_t n) {
  return s.size() <= n ? s : s.substr(s.size() - n);
}

bool have_npm() {
  return run_shell("command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1"
                   " && npm --version >/dev/null 2>&1")
           .first
         == 0;
}

bool npm_opted_out() {
  auto* v = std::getenv("SAIL_TINKER_NO_NPM");
  return v != nullptr && *v != '\0' && std::string{v} != "0";
}

std::string npm_missing_message(const std::string& what) {
  return "npm (or node) is not installed, and " + what
         + " needs it: run scripts/setup, or set SAIL_TINKER_NO_NPM=1 to opt out of the "
           "npm-based tests explicitly";
}

namespace {

// "ajv@^8" -> "ajv"; "@scope/pkg@1" -> "@scope/pkg".
std::string package_name(const std::string& spec) {
  auto at = spec.rfind('@');
  return at == std::string::npos || at == 0 ? spec : spec.substr(0, at);
}

bool all_installed(const fs::path& dir, const std::vector<std::string>& packages) {
  for (auto& p : packages)
    if (!fs::exists(dir / "node_modules" / package_name(p) / "package.json"))
      return false;
  return true;
}

} // namespace

fs::path npm_install_cached(const std::string& folder, const std::vector<std::string>& packages,
                            std::string& log) {
  fs::path cache = fs::path{binary_dir} / folder;
  if (all_installed(cache, packages))
    return cache;
  fs::path tmp = fs::path{binary_dir} / (folder + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  {
    std::ofstream pkg{tmp / "package.json"};
    pkg << R"({"name":"sail-tinker-)" << folder << R"(","private":true})" << '\n';
  }
  auto logfile = tmp / "npm-install.log";
  std::string specs;
  for (auto& p : packages)
    specs += " " + shell_quote(p);
  auto cmd = "cd " + shell_quote(tmp.string())
             + " && timeout 300 npm install --no-audit --no-fund --no-progress"
               " --loglevel=error"
             + specs + " > " + shell_quote(logfile.string()) + " 2>&1";
  auto [code, out] = run_shell(cmd);
  if (code != 0 || !all_installed(tmp, packages)) {
    log = "npm install failed (exit " + std::to_string(code)
          + "): " + tail_of(slurp_file(logfile));
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

} // namespace sail::test
