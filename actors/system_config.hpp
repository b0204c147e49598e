// CAF configuration shared by every sail-tinker actor system.
//
// Split in two as the 0.17 guide advises: system_config registers the message
// vocabulary, the error renderer and the wire defaults and loads no module (so
// deterministic tests can use it); node_config adds the io middleman and the
// OpenSSL module for service and trainer nodes.
#pragma once

#include <caf/actor_system_config.hpp>

namespace sail {

/// Registers sail-tinker's type-ID block and error category on any config.
void register_vocabulary(caf::actor_system_config& cfg);

struct system_config : caf::actor_system_config {
  system_config();
};

struct node_config : system_config {
  node_config();
};

} // namespace sail
