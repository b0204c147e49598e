// An io_context run by a few threads for client tests, and a helper that waits
// (bounded) for one http_client request.
#pragma once

#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "sail_tinker/net/http_client.hpp"

namespace sail::test {

class io_threads {
public:
  explicit io_threads(size_t n = 2) : guard_(boost::asio::make_work_guard(io_)) {
    for (size_t i = 0; i < n; ++i)
      threads_.emplace_back([this] { io_.run(); });
  }

  ~io_threads() {
    guard_.reset();
    io_.stop();
    for (auto& t : threads_)
      t.join();
  }

  boost::asio::io_context& context() noexcept {
    return io_;
  }

private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

/// Runs one request and waits for its completion (at most two minutes).
inline caf::expected<http_response> fetch(http_client& client, http_request req) {
  auto p = std::make_shared<std::promise<caf::expected<http_response>>>();
  auto f = p->get_future();
  client.async_request(std::move(req), [p](caf::expected<http_response> r) {
    p->set_value(std::move(r));
  });
  if (f.wait_for(std::chrono::minutes(2)) != std::future_status::ready)
    throw std::runtime_error("request did not complete within two minutes");
  return f.get();
}

inline http_request get(std::string url) {
  http_request req;
  req.url = std::move(url);
  return req;
}

} // namespace sail::test
