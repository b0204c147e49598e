// Asynchronous HTTP for actors: an HTTP call started by an actor completes on
// an io_context thread; the completion travels back to the actor as a message
// through a weak handle. (Not a "bridge": in this tree that word names the
// actor that turns callback / future calls into requests, actors/bridge.hpp.)
// Nothing on the Asio side touches actor state, and a pending call never
// keeps an actor alive (nor blocks ~actor_system in CAF 0.17).
#pragma once

#include <cstdint>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/send.hpp>

#include "sail_tinker/messages/fwd.hpp"
#include "sail_tinker/net/http_client.hpp"

namespace sail {

/// Completion of one HTTP call, labelled by the actor that started it.
/// Local only: never crosses a node boundary.
struct http_completion {
  uint64_t owner = 0;       ///< what the call belongs to (a job id, a resolution id)
  uint64_t generation = 0;  ///< which call of it (late completions are stale)
  caf::expected<http_response> result{http_response{}};
};

} // namespace sail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::http_completion)

namespace sail {

/// Starts `req` on `client`; delivers (atom::http_done, http_completion) to
/// `self` when done, unless the actor is gone by then.
template <class Self>
void start_http(Self* self, http_client& client, http_request req, uint64_t owner,
                uint64_t generation) {
  using handle_type = typename Self::actor_hdl;
  caf::weak_actor_ptr weak = self->ctrl();
  client.async_request(std::move(req),
                       [weak, owner, generation](caf::expected<http_response> res) {
                         auto strong = caf::actor_cast<caf::strong_actor_ptr>(weak);
                         if (!strong)
                           return;
                         caf::anon_send(caf::actor_cast<handle_type>(strong),
                                        atom::http_done_v,
                                        http_completion{owner, generation,
                                                        std::move(res)});
                       });
}

} // namespace sail
