#include "support/nginx.hpp"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "support/certs.hpp"

namespace sail::test {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
  // A few attempts in case another process grabs the port in between.
  std::string last_log;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    {
      std::ofstream conf{dir_ + "/nginx.conf"};
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
    std::string globals = "daemon off; pid " + dir_ + "/nginx.pid; error_log " + dir_
                          + "/logs/error.log;";
    pid_ = fork();
    if (pid_ < 0)
      throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      // Child: silence stdio, become nginx.
      if (freopen("/dev/null", "r", stdin) == nullptr
          || freopen((dir_ + "/logs/stdout.log").c_str(), "w", stdout) == nullptr
          || freopen((dir_ + "/logs/stderr.log").c_str(), "w", stderr) == nullptr)
        _exit(126);
      std::string conf = dir_ + "/nginx.conf";
      execl(bin.c_str(), bin.c_str(), "-p", dir_.c_str(), "-c", conf.c_str(), "-g",
            globals.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    // Bounded wait for readiness (external process: polling is the only way).
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      if (accepts(port_))
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    last_log = slurp(dir_ + "/logs/error.log") + slurp(dir_ + "/logs/stderr.log");
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (last_log.find("Address already in use") == std::string::npos)
      break;
  }
  remove_dir(dir_);
  throw std::runtime_error("nginx did not start:\n" + last_log);
}

nginx_server::~nginx_server() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    bool gone = false;
    for (int i = 0; i < 250 && !gone; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_)
        gone = true;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  remove_dir(dir_);
}

std::string nginx_server::base_url() const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

} // namespace sail::test
