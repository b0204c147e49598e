#include "sail_tinker/actors/cluster.hpp"

#include <algorithm>

#include <caf/send.hpp>

#include "sail_tinker/actors/balancer.hpp"
#include "sail_tinker/actors/bounded_stop.hpp"
#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"

namespace sail {

caf::expected<completer_actor> spawn_cluster(caf::actor_system& sys, cluster_options opts,
                                             std::shared_ptr<cluster_monitor> monitor) {
  if (auto err = validate(opts))
    return err;
  auto tls = resolve_tls(sys, opts.security);
  if (!tls)
    return std::move(tls.error());
  if (!monitor)
    monitor = std::make_shared<cluster_monitor>(opts.nodes);
  auto shared = std::make_shared<const cluster_options>(std::move(opts));
  balancer_actor b = sys.spawn(balancer, shared, monitor, *tls);
  return completer_actor{b};
}

// -- cluster ------------------------------------------------------------------------------

cluster::cluster(caf::actor_system& sys, cluster_options opts)
  : sys_(sys), opts_(std::move(opts)) {
}

caf::expected<std::unique_ptr<cluster>> cluster::start(caf::actor_system& sys,
                                                       cluster_options opts) {
  std::unique_ptr<cluster> c{new cluster(sys, std::move(opts))};
  c->monitor_ = std::make_shared<cluster_monitor>(c->opts_.nodes);
  auto b = spawn_cluster(sys, c->opts_, c->monitor_);
  if (!b)
    return std::move(b.error());
  c->balancer_ = std::move(*b);
  c->bridge_ = spawn_bridge(sys, "cluster");
  return c;
}

cluster::~cluster() {
  shutdown();
}

bool cluster::wait_ready(size_t n, caf::timespan timeout) const {
  return monitor_->wait(
    [n](const std::vector<node_status>& xs) {
      return static_cast<size_t>(std::count_if(xs.begin(), xs.end(), [](auto& x) {
               return x.state == node_state::ready;
             }))
             >= n;
    },
    timeout);
}

caf::timespan cluster::call_timeout() const {
  return opts_.request_timeout + opts_.queue_timeout + 2 * proxy_margin;
}

std::future<cluster::sample_result> cluster::sample(sample_request req) {
  return bridge_future<tokens_with_logprobs>(bridge_, atom::sample_v, balancer_, std::move(req),
                                             caf::duration{call_timeout()});
}

std::future<cluster::group_reply> cluster::sample_group(sample_request req, uint32_t n) {
  return bridge_future<group_result>(bridge_, atom::sample_group_v, balancer_, std::move(req), n,
                                     caf::duration{call_timeout()});
}

void cluster::cancel(std::string key_or_group) {
  if (balancer_)
    caf::anon_send(balancer_, atom::cancel_v, std::move(key_or_group));
}

caf::expected<completer_stats> cluster::stats() {
  if (!balancer_)
    return make_error(errc::cancelled, "cluster shut down");
  return blocking_request<completer_stats>(sys_, balancer_,
                                           opts_.stats_timeout + 2 * proxy_margin, atom::stats_v);
}

caf::expected<completer_actor> cluster::durable_handle(durable_options opts) {
  if (stopped_ || !balancer_)
    return make_error(errc::cancelled, "the cluster is shut down");
  auto c = spawn_durable_completer(sys_, balancer_, opts_.config, std::move(opts));
  if (c)
    durables_.push_back(*c);
  return c;
}

void cluster::shutdown(caf::timespan grace) {
  if (stopped_)
    return;
  stopped_ = true;
  // Durable fronts first: their open samples fail with cancelled.
  for (auto& d : durables_)
    caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
  durables_.clear();
  if (balancer_) {
    // The balancer fails its open work with `cancelled`: the bridge's
    // callbacks run with it.
    stop_bounded(sys_, balancer_, grace);
    // The proxies got their exit from the balancer; wait until they are gone.
    monitor_->wait(
      [](const std::vector<node_status>& xs) {
        return std::all_of(xs.begin(), xs.end(),
                           [](auto& x) { return x.state == node_state::stopped; });
      },
      grace);
    balancer_ = nullptr;
  }
  stop_bounded(sys_, bridge_, grace);
  bridge_ = nullptr;
}

} // namespace sail
