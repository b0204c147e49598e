// Node/npm helpers for the tests that drive the emulator with third-party
// npm packages (the openai client, the ajv JSON Schema validator).
//
// Packages are installed once per build tree into <build>/<folder> (a
// temporary folder renamed into place when complete, so an interrupted
// install is never reused), bounded by `timeout`, and reused later. A machine
// without npm/node fails these tests (scripts/setup installs them); the
// environment variable SAIL_TINKER_NO_NPM=1 is the explicit opt-out.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace sail::test {

/// Runs `cmd` through the shell; its exit status (-1: not exited) and stdout.
std::pair<int, std::string> run_shell(const std::string& cmd);

/// The whole file (empty if it cannot be read).
std::string slurp_file(const std::filesystem::path& p);

/// `s` single-quoted for the shell.
std::string shell_quote(const std::string& s);

/// The last `n` bytes of `s`.
std::string tail_of(const std::string& s, size_t n = 3000);

/// npm and node are on PATH and run.
bool have_npm();

/// SAIL_TINKER_NO_NPM is set to a non-empty value other than "0".
bool npm_opted_out();

/// The failure message for a missing npm/node, naming the opt-out variable.
std::string npm_missing_message(const std::string& what);

/// Installs `packages` (npm specs such as "ajv@^8") into <build>/<folder>
/// once; the folder holding node_modules, or an empty path with `log` set.
std::filesystem::path npm_install_cached(const std::string& folder,
                                         const std::vector<std::string>& packages,
                                         std::string& log);

} // namespace sail::test
