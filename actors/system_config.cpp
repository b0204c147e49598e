#include "sail_tinker/actors/system_config.hpp"

#include <algorithm>
#include <thread>

#include <caf/atom.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"

namespace sail {

void register_vocabulary(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::sail>();
  cfg.add_error_category(error_category, render_error);
}

system_config::system_config() {
  register_vocabulary(*this);
  // The wire version guard and failure detection (both off in CAF 0.17.6 by
  // default); users may override them in caf-application.ini or on the CLI.
  set("middleman.app-identifiers", std::vector<std::string>{protocol_version});
  set("middleman.heartbeat-interval", caf::timespan{std::chrono::seconds(5)});
  set("middleman.connection-timeout", caf::timespan{std::chrono::seconds(15)});
  set("middleman.enable-automatic-connections", false);
  // The workload is I/O-bound message passing. CAF 0.17's work-stealing
  // workers poll and nap (50 us) when idle, and it starts at least four of
  // them: on small machines most scheduler CPU went to wake-ups
  // (bench/e2e_bench, docs/benchmarks.md). Sharing workers block instead;
  // one per core.
  set("scheduler.policy", caf::atom("sharing"));
  set("scheduler.max-threads",
      static_cast<size_t>(std::max(2u, std::thread::hardware_concurrency())));
}

node_config::node_config() {
  load<caf::io::middleman>();
  load<caf::openssl::manager>();
}

} // namespace sail
