#include "sail_tinker/actors/cluster_monitor.hpp"

namespace sail {

const char* to_string(node_state x) noexcept {
  switch (x) {
    case node_state::connecting:
      return "connecting";
    case node_state::ready:
      return "ready";
    case node_state::lost:
      return "lost";
    case node_state::stopped:
      return "stopped";
  }
  return "unknown";
}

cluster_monitor::cluster_monitor(const std::vector<node_address>& nodes) {
  for (auto& n : nodes) {
    node_status s;
    s.address = n;
    nodes_.push_back(std::move(s));
  }
}

std::vector<node_status> cluster_monitor::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return nodes_;
}

void cluster_monitor::update(size_t idx, const std::function<void(node_status&)>& fn) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (idx >= nodes_.size())
      return;
    fn(nodes_[idx]);
  }
  cv_.notify_all();
}

bool cluster_monitor::wait(
  const std::function<bool(const std::vector<node_status>&)>& pred,
  caf::timespan timeout) const {
  std::unique_lock<std::mutex> guard{mtx_};
  return cv_.wait_for(guard, timeout, [&] { return pred(nodes_); });
}

} // namespace sail
