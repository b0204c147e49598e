#include "sail_tinker/actors/system_config.hpp"

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
}

node_config::node_config() {
  load<caf::io::middleman>();
  load<caf::openssl::manager>();
}

} // namespace sail
