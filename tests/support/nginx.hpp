// Starts Debian's nginx on 127.0.0.1 with a generated configuration in a
// temporary directory, for tests against a third-party HTTP(S) server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <sys/types.h>

namespace sail::test {

struct nginx_tls {
  std::string cert;  ///< PEM certificate (chain) file
  std::string key;   ///< PEM key file
};

/// SAIL_TINKER_NO_NGINX set to a non-empty value other than "0": the explicit
/// opt-out of the tests that need nginx.
bool nginx_opted_out();

class nginx_server {
public:
  /// Path of the nginx binary ($SAIL_TINKER_NGINX, else /usr/sbin/nginx, else
  /// nginx on PATH), or empty when there is none.
  static std::string binary();

  /// Starts nginx serving `locations` (the body of a server{} block: location
  /// blocks and directives) on a free port of 127.0.0.1, with TLS when `tls`
  /// is set. Keep-alive is on. "@DIR@" in `locations` is replaced by dir().
  /// Waits (bounded, 10 s) for nginx's pid file, which nginx writes once its
  /// socket listens (inotify, plus a pidfd to notice an early exit), then
  /// confirms with one connect. Retries on "Address already in use". Throws
  /// std::runtime_error with nginx's error log on failure.
  explicit nginx_server(const std::string& locations,
                        std::optional<nginx_tls> tls = std::nullopt);

  nginx_server(const nginx_server&) = delete;
  nginx_server& operator=(const nginx_server&) = delete;

  /// Stops nginx (SIGTERM, up to 5 s for the exit, then SIGKILL) and removes
  /// its directory.
  ~nginx_server();

  uint16_t port() const noexcept {
    return port_;
  }

  /// The temporary directory (served files may be put there).
  const std::string& dir() const noexcept {
    return dir_;
  }

  /// "http(s)://127.0.0.1:<port>"
  std::string base_url() const;

private:
  std::string dir_;
  uint16_t port_ = 0;
  bool tls_ = false;
  pid_t pid_ = -1;
  int pid_fd_ = -1;  ///< pidfd of nginx (-1: none)

  void close_pid_fd() noexcept;
};

/// A port on 127.0.0.1 that was free a moment ago.
uint16_t free_port();

} // namespace sail::test

// On a machine prepared by scripts/setup nginx is there: a missing binary
// fails the test. SAIL_TINKER_NO_NGINX=1 is the explicit opt-out.
#define SAIL_TEST_REQUIRE_NGINX()                                              \
  if (::sail::test::nginx_opted_out()) {                                       \
    WARN("SAIL_TINKER_NO_NGINX is set: this nginx test did not run");          \
    return;                                                                    \
  }                                                                            \
  if (::sail::test::nginx_server::binary().empty())                            \
  FAIL("nginx is not installed: run scripts/setup (nginx-light), or set "      \
       "SAIL_TINKER_NO_NGINX=1 to opt out of the nginx tests explicitly")
