// The `sail-tinker` executable as a subprocess of a test: its path, an
// environment without the developer's credentials, and `sail-tinker emulate`
// as a process of its own (it outlives a killed job; its stats come over HTTP).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "support/process.hpp"

namespace sail::test {

using env_map = std::map<std::string, std::optional<std::string>>;

/// The sail-tinker executable of this build.
std::string cli_binary();

/// No credentials, endpoints, proxies or failpoints of the developer's
/// environment leak into a test.
env_map clean_env();

/// `sail-tinker emulate [extra...]` on an ephemeral loopback port; SIGTERM
/// and a bounded wait on destruction.
class emulate_process {
public:
  explicit emulate_process(std::vector<std::string> extra = {});
  ~emulate_process();

  emulate_process(const emulate_process&) = delete;
  emulate_process& operator=(const emulate_process&) = delete;

  /// clean_env() plus SAIL_BASE_URL / SAIL_API_KEY of this emulator.
  env_map sail_env() const;
  /// clean_env() plus TINKER_BASE_URL / TINKER_API_KEY of this emulator.
  env_map tinker_env() const;
  /// GET /_emulator/stats (`?summary=1` with `summary`).
  boost::json::value stats(bool summary = false) const;
  /// Requests to `route` (e.g. "POST /v1/responses") so far, any status.
  uint64_t requests_to(const std::string& route) const;

  std::unique_ptr<subprocess> proc;
  std::string url;
  uint16_t port = 0;
};

} // namespace sail::test
