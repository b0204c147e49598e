// The one CAF type-ID block of sail-tinker.
//
// Every type that travels in a CAF message (locally or between nodes) is listed
// here exactly once. The registered names travel on the wire and form part of
// the typed interfaces' signatures: renaming or reordering entries is a
// protocol change and requires a new protocol_version (app-identifiers).
#pragma once

#include <caf/type_id.hpp>

#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/messages/types.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(sail, caf::first_custom_type_id)

  // Message types.
  CAF_ADD_TYPE_ID(sail, (sail::error_info))
  CAF_ADD_TYPE_ID(sail, (sail::voyage))
  CAF_ADD_TYPE_ID(sail, (sail::model_input))
  CAF_ADD_TYPE_ID(sail, (sail::stop_condition))
  CAF_ADD_TYPE_ID(sail, (sail::tokens_with_logprobs))
  CAF_ADD_TYPE_ID(sail, (sail::tinker_path))
  CAF_ADD_TYPE_ID(sail, (sail::signed_url))
  CAF_ADD_TYPE_ID(sail, (sail::resolve_request))
  CAF_ADD_TYPE_ID(sail, (sail::completer_config))
  CAF_ADD_TYPE_ID(sail, (sail::sample_request))
  CAF_ADD_TYPE_ID(sail, (sail::sample_outcome))
  CAF_ADD_TYPE_ID(sail, (sail::group_result))
  CAF_ADD_TYPE_ID(sail, (sail::http_header))
  CAF_ADD_TYPE_ID(sail, (sail::sail_job))
  CAF_ADD_TYPE_ID(sail, (sail::completer_stats))
  CAF_ADD_TYPE_ID(sail, (sail::completer_actor))

  // Vectors are not implied by CAF 0.17's ID-block registration: list them.
  CAF_ADD_TYPE_ID(sail, (std::vector<sail::tokens_with_logprobs>))
  CAF_ADD_TYPE_ID(sail, (std::vector<sail::sample_request>))
  CAF_ADD_TYPE_ID(sail, (std::vector<sail::sample_outcome>))
  CAF_ADD_TYPE_ID(sail, (std::vector<sail::http_header>))

  // sail-tinker.v2: the observer of accepted creates (sample_request::observer).
  CAF_ADD_TYPE_ID(sail, (sail::sample_observer_actor))

  // sail-tinker.v4: completion webhooks (sample_request::webhook, obtain's
  // reply).
  CAF_ADD_TYPE_ID(sail, (sail::webhook_endpoint))

CAF_END_TYPE_ID_BLOCK(sail)
