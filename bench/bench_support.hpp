// Helpers shared by bench/inflight_bench and bench/e2e_bench: the emulator in
// a forked child process (so that its memory and CPU are not the client's),
// a blocking GET of the emulator's /_emulator/stats, /proc readers, and tiny
// flag parsing. Header-only; not part of the library.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "sail_tinker/emulator/emulator.hpp"

namespace sail::bench {

// -- /proc -------------------------------------------------------------------

/// A "VmRSS:"-style field of /proc/<pid>/status in KiB (pid 0: self).
inline long proc_status_kb(const char* field, pid_t pid = 0) {
  std::string path = pid == 0 ? "/proc/self/status"
                              : "/proc/" + std::to_string(pid) + "/status";
  std::ifstream in{path};
  std::string line;
  auto len = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, len, field) == 0)
      return std::strtol(line.c_str() + len, nullptr, 10);
  return -1;
}

inline long rss_kb(pid_t pid = 0) {
  return proc_status_kb("VmRSS:", pid);
}

/// User + system CPU seconds of a process (utime + stime of /proc/<pid>/stat).
inline double proc_cpu_seconds(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string all{std::istreambuf_iterator<char>{in}, {}};
  auto close = all.rfind(')');
  if (close == std::string::npos)
    return 0;
  std::istringstream rest{all.substr(close + 2)};
  std::string field;
  double ticks = 0;
  // Fields after "(comm)": state is #3; utime #14, stime #15.
  for (int i = 3; i <= 15 && rest >> field; ++i)
    if (i == 14 || i == 15)
      ticks += std::strtod(field.c_str(), nullptr);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

inline double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

// -- blocking HTTP GET -----------------------------------------------------------

/// GET http://127.0.0.1:<port><target> with Connection: close; returns the
/// body of a 200, throws otherwise.
inline std::string http_get(uint16_t port, const std::string& target) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    throw std::runtime_error("connect to the emulator failed");
  }
  std::string req = "GET " + target
                    + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  for (size_t off = 0; off < req.size();) {
    auto n = ::write(fd, req.data() + off, req.size() - off);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("write to the emulator failed");
    }
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[65536];
  for (;;) {
    auto n = ::read(fd, buf, sizeof(buf));
    if (n <= 0)
      break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  auto head_end = resp.find("\r\n\r\n");
  if (resp.compare(0, 12, "HTTP/1.1 200") != 0 || head_end == std::string::npos)
    throw std::runtime_error("unexpected answer from the emulator: "
                             + resp.substr(0, 64));
  auto body = resp.substr(head_end + 4);
  // The emulator answers with Content-Length; tolerate chunked just in case.
  auto head = resp.substr(0, head_end);
  if (head.find("chunked") != std::string::npos) {
    std::string out;
    size_t pos = 0;
    for (;;) {
      auto eol = body.find("\r\n", pos);
      if (eol == std::string::npos)
        break;
      auto len = std::strtoul(body.c_str() + pos, nullptr, 16);
      if (len == 0)
        break;
      out.append(body, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    return out;
  }
  return body;
}

// -- the emulator in a child process ---------------------------------------------

/// Forks a child that runs an emulator::server until stop(). Call it before
/// the parent starts any thread (fork copies only the calling thread).
/// `on_command`, run in the child, handles the bytes sent by command().
class emulator_child {
public:
  using command_handler = std::function<void(emulator::server&, char)>;

  explicit emulator_child(emulator::options opts, command_handler on_command = {}) {
    int up[2];   // child -> parent: the port
    int down[2]; // parent -> child: EOF means stop
    if (::pipe(up) != 0 || ::pipe(down) != 0)
      throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0)
      throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::close(up[0]);
      ::close(down[1]);
      int rc = 0;
      try {
        emulator::server emu{std::move(opts)};
        uint16_t port = emu.port();
        if (::write(up[1], &port, sizeof(port)) != sizeof(port))
          std::_Exit(3);
        char c;
        while (::read(down[0], &c, 1) > 0) {
          if (on_command)
            on_command(emu, c);
          if (::write(up[1], &c, 1) != 1) // acknowledged once applied
            break;
        }
        emu.stop();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "emulator child: %s\n", e.what());
        rc = 2;
      }
      std::_Exit(rc);
    }
    ::close(up[1]);
    ::close(down[0]);
    ctl_ = down[1];
    ack_ = up[0];
    uint16_t port = 0;
    if (::read(ack_, &port, sizeof(port)) != sizeof(port)) {
      stop();
      throw std::runtime_error("the emulator child did not start");
    }
    port_ = port;
  }

  /// Sends `c` to the child's command handler; returns once it was applied.
  void command(char c) {
    char ack = 0;
    if (ctl_ < 0 || ::write(ctl_, &c, 1) != 1 || ::read(ack_, &ack, 1) != 1 || ack != c)
      throw std::runtime_error("the emulator child did not take the command");
  }

  emulator_child(const emulator_child&) = delete;
  emulator_child& operator=(const emulator_child&) = delete;

  ~emulator_child() {
    stop();
  }

  uint16_t port() const {
    return port_;
  }
  pid_t pid() const {
    return pid_;
  }
  std::string base_url() const {
    return "http://127.0.0.1:" + std::to_string(port_);
  }

  /// GET /_emulator/stats (summary: without the per-key maps) as JSON.
  boost::json::object stats(bool summary = true) const {
    auto body = http_get(port_, summary ? "/_emulator/stats?summary=1"
                                        : "/_emulator/stats");
    return boost::json::parse(body).as_object();
  }

  /// Requests to `route` answered with `status` (from a stats object).
  static uint64_t count(const boost::json::object& st, const char* route,
                        const char* status) {
    auto& reqs = st.at("requests").as_object();
    auto r = reqs.find(route);
    if (r == reqs.end())
      return 0;
    auto& by = r->value().as_object();
    auto s = by.find(status);
    return s == by.end() ? 0 : s->value().to_number<uint64_t>();
  }

  /// Closes the control pipe and reaps the child (SIGKILL after 10 s).
  void stop() {
    if (pid_ <= 0)
      return;
    if (ctl_ >= 0) {
      ::close(ctl_);
      ctl_ = -1;
    }
    if (ack_ >= 0) {
      ::close(ack_);
      ack_ = -1;
    }
    for (int i = 0; i < 1000; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

private:
  pid_t pid_ = -1;
  int ctl_ = -1;
  int ack_ = -1;
  uint16_t port_ = 0;
};

// -- flags -----------------------------------------------------------------------

/// "--name value" or "--name=value" from argv, else nullopt.
inline std::optional<std::string> flag(int argc, char** argv, const std::string& name) {
  auto dashed = "--" + name;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == dashed && i + 1 < argc)
      return std::string{argv[i + 1]};
    if (a.rfind(dashed + "=", 0) == 0)
      return a.substr(dashed.size() + 1);
  }
  return std::nullopt;
}

inline long flag_int(int argc, char** argv, const std::string& name, long fallback) {
  auto v = flag(argc, argv, name);
  return v ? std::strtol(v->c_str(), nullptr, 10) : fallback;
}

inline bool has_flag(int argc, char** argv, const std::string& name) {
  auto dashed = "--" + name;
  for (int i = 1; i < argc; ++i)
    if (dashed == argv[i])
      return true;
  return false;
}

/// A prompt of `n` tokens within the toy vocabulary, varied by `salt`.
inline std::vector<int64_t> prompt_tokens(size_t n, uint64_t salt) {
  std::vector<int64_t> xs(n);
  for (size_t i = 0; i < n; ++i)
    xs[i] = static_cast<int64_t>((salt * 31 + i * 7) % 61 + 3);
  return xs;
}

} // namespace sail::bench
