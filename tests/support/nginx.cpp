#include "support/nginx.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "support/certs.hpp"

namespace sail::test {

bool nginx_opted_out() {
  auto* v = std::getenv("SAIL_TINKER_NO_NGINX");
  return v != nullptr && *v != '\0' && std::string{v} != "0";
}

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

using clock_type = std::chrono::steady_clock;

constexpr const char* pid_file_name = "nginx.pid";
constexpr std::chrono::milliseconds start_timeout{10'000};
constexpr std::chrono::milliseconds stop_timeout{5'000};

int remaining_ms(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
  return left.count() < 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1'000'000));
}

struct fd_guard {
  explicit fd_guard(int f) noexcept : fd(f) {
  }
  int fd = -1;
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0)
      close(fd);
  }
};

enum class start_outcome { ready, exited, timed_out };

/// Reads the pending events of `ino`; true if one is about `name`. (The
/// queue holds thousands of events; the fixture's directory sees a handful.)
bool pending_events_name(int ino, const char* name) {
  alignas(inotify_event) char buf[4096];
  bool found = false;
  for (;;) {
    auto got = read(ino, buf, sizeof(buf));
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return found; // EAGAIN: drained
    for (ssize_t off = 0; off < got;) {
      auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      if (ev->len > 0 && std::strcmp(ev->name, name) == 0)
        found = true;
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
}

/// Waits until nginx (`pid`) closes or renames `name` in the watched
/// directory (start_outcome::ready), exits (exited) or `deadline` passes
/// (timed_out; also on a poll() failure). Blocks in poll() on the inotify fd
/// and the pidfd; without a pidfd (kernel < 5.3, seccomp) the process is
/// re-checked with waitpid(WNOHANG) at most every 50 ms.
start_outcome wait_for_start(int ino, int pid_fd, pid_t pid, const char* name,
                             clock_type::time_point deadline) {
  for (;;) {
    pollfd fds[2] = {{ino, POLLIN, 0}, {pid_fd, POLLIN, 0}};
    nfds_t n = pid_fd >= 0 ? 2 : 1;
    int timeout = remaining_ms(deadline);
    if (pid_fd < 0)
      timeout = std::min(timeout, 50);
    auto rc = poll(fds, n, timeout);
    if (rc < 0) {
      if (errno == EINTR)
        continue;
      return start_outcome::timed_out;
    }
    if ((fds[0].revents & POLLIN) != 0 && pending_events_name(ino, name))
      return start_outcome::ready;
    if (pid_fd >= 0 ? fds[1].revents != 0 : waitpid(pid, nullptr, WNOHANG) == pid)
      return start_outcome::exited;
    if (clock_type::now() >= deadline)
      return start_outcome::timed_out;
  }
}

bool accepts(uint16_t port) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket sock{io};
  boost::system::error_code ec;
  sock.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
  return !ec;
}

} // namespace

uint16_t free_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acc{io, {boost::asio::ip::make_address("127.0.0.1"), 0}};
  return acc.local_endpoint().port();
}

std::string nginx_server::binary() {
  if (auto env = std::getenv("SAIL_TINKER_NGINX"); env != nullptr && *env != '\0')
    return env;
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"})
    if (access(p, X_OK) == 0)
      return p;
  return {};
}

nginx_server::nginx_server(const std::string& locations, std::optional<nginx_tls> tls)
  : tls_(tls.has_value()) {
  auto bin = binary();
  if (bin.empty())
    throw std::runtime_error("nginx binary not found");
  dir_ = make_temp_dir("sail-nginx");
  std::filesystem::create_directories(dir_ + "/logs");
  std::filesystem::create_directories(dir_ + "/tmp");
  // Readiness signal: nginx writes its pid file (`pid` below) only after it
  // has bound and listened on every listening socket (ngx_init_cycle opens
  // the sockets, main() then calls ngx_create_pidfile; checked with strace on
  // nginx 1.22: bind, listen, open(O_TRUNC) + write + close of the pid file).
  // The watch on the directory exists before nginx starts, so the close of
  // the pid file cannot be missed.
  fd_guard ino{inotify_init1(IN_NONBLOCK | IN_CLOEXEC)};
  if (ino.fd < 0 || inotify_add_watch(ino.fd, dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    std::string what = std::string{"nginx fixture: inotify: "} + std::strerror(errno);
    remove_dir(dir_);
    throw std::runtime_error(what);
  }
  const std::string pid_path = dir_ + "/" + pid_file_name;
  const std::string conf_path = dir_ + "/nginx.conf";
  const std::string stdout_path = dir_ + "/logs/stdout.log";
  const std::string stderr_path = dir_ + "/logs/stderr.log";
  const std::string globals = "daemon off; pid " + pid_path + "; error_log " + dir_
                              + "/logs/error.log;";
  // A few attempts in case another process grabs the port in between.
  std::string last_log;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    {
      std::ofstream conf{conf_path};
      conf << "master_process off;\n"
           << "worker_processes 1;\n"
           << "events { worker_connections 256; }\n"
           << "http {\n"
           << "  access_log off;\n"
           << "  client_body_temp_path " << dir_ << "/tmp/body;\n"
           << "  proxy_temp_path " << dir_ << "/tmp/proxy;\n"
           << "  fastcgi_temp_path " << dir_ << "/tmp/fastcgi;\n"
           << "  default_type application/json;\n"
           << "  keepalive_timeout 60s;\n"
           << "  keepalive_requests 10000;\n"
           << "  server {\n"
           << "    listen 127.0.0.1:" << port_ << (tls_ ? " ssl" : "") << ";\n"
           << "    server_name localhost;\n";
      if (tls_)
        conf << "    ssl_certificate " << tls->cert << ";\n"
             << "    ssl_certificate_key " << tls->key << ";\n";
      auto body = locations;
      for (size_t pos = 0; (pos = body.find("@DIR@", pos)) != std::string::npos;)
        body.replace(pos, 5, dir_);
      conf << body << "\n  }\n}\n";
    }
    std::error_code ignored;
    std::filesystem::remove(pid_path, ignored);
    pid_ = fork();
    if (pid_ < 0) {
      remove_dir(dir_);
      throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
      // Child: clean signal mask (the parent's threads may block signals,
      // and nginx must see SIGTERM), silence stdio, become nginx. Only
      // async-signal-safe calls after fork.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      int in = open("/dev/null", O_RDONLY);
      int out = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (in < 0 || out < 0 || err < 0 || dup2(in, STDIN_FILENO) < 0
          || dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0)
        _exit(126);
      execl(bin.c_str(), bin.c_str(), "-p", dir_.c_str(), "-c", conf_path.c_str(), "-g",
            globals.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    pid_fd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    auto outcome = wait_for_start(ino.fd, pid_fd_, pid_, pid_file_name,
                                  clock_type::now() + start_timeout);
    // The pid file says the sockets listen; one connect confirms it.
    if (outcome == start_outcome::ready && accepts(port_))
      return;
    last_log = slurp(dir_ + "/logs/error.log") + slurp(dir_ + "/logs/stderr.log");
    if (outcome == start_outcome::ready)
      last_log += "\n(pid file written but 127.0.0.1:" + std::to_string(port_)
                  + " refused the connection)";
    else if (outcome == start_outcome::timed_out)
      last_log += "\n(no pid file within "
                  + std::to_string(start_timeout.count()) + " ms)";
    if (outcome != start_outcome::exited)
      kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    close_pid_fd();
    if (last_log.find("Address already in use") == std::string::npos)
      break;
  }
  remove_dir(dir_);
  throw std::runtime_error("nginx did not start:\n" + last_log);
}

nginx_server::~nginx_server() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    // Bounded wait for the exit on the pidfd; without one (kernel < 5.3 or a
    // seccomp filter) nginx is not waited for gracefully: SIGKILL at once.
    bool gone = false;
    if (pid_fd_ >= 0) {
      auto deadline = clock_type::now() + stop_timeout;
      for (;;) {
        pollfd pfd{pid_fd_, POLLIN, 0};
        auto rc = poll(&pfd, 1, remaining_ms(deadline));
        if (rc > 0) {
          gone = true;
          break;
        }
        if (rc == 0 || errno != EINTR)
          break;
      }
    }
    if (!gone)
      kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  close_pid_fd();
  remove_dir(dir_);
}

void nginx_server::close_pid_fd() noexcept {
  if (pid_fd_ >= 0)
    close(pid_fd_);
  pid_fd_ = -1;
}

std::string nginx_server::base_url() const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

} // namespace sail::test
