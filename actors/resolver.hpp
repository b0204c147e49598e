// The resolver actor: Tinker REST -> signed checkpoint archive URL.
//
// resolve(tinker_path, optional ttl_seconds): sets the TTL first when asked
// (PUT .../ttl), then fetches the archive URL (GET .../archive; 302 + Location
// or 200 JSON), retrying "still building" 503s and transient failures with
// bounded backoff. URLs are cached per path until their refresh point
// (signed_url::refresh_at); concurrent resolves of one path share one REST
// call. A resolve with a TTL always calls Tinker (the PUT must happen).
#pragma once

#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/net/http_client.hpp"
#include "sail_tinker/net/retry_policy.hpp"

namespace sail {

struct resolver_options {
  /// Tinker base URL (empty: the default) and API key (tml-... or a JWT).
  std::string base_url;
  std::string api_key;
  /// Retries of each REST call (net/retry_policy.hpp; no sample deadline
  /// here, so max_attempts bounds them); 503 on archive waits
  /// still_building_delay.
  retry_options retry = default_retry();
  /// Timeout of one HTTP call.
  caf::timespan call_timeout = std::chrono::seconds(30);
  /// The one refresh margin of signed URLs (see with_refresh_schedule): a
  /// URL is replaced from 2 margins before its expiry on (the cache stops
  /// serving it, completers refresh it in the background) and is not sent in
  /// new requests during its last margin. Shorter for URLs that live less
  /// than 4 margins.
  caf::timespan refresh_margin = std::chrono::minutes(2);
  /// Seed for backoff jitter (0: random).
  uint64_t seed = 0;

  static retry_options default_retry() {
    retry_options r;
    r.max_attempts = 8;
    return r;
  }

  /// invalid_argument naming the option (`prefix` + "call-timeout",
  /// "max-attempts", ...; the retry options are flat in [resolver]) if out
  /// of range.
  caf::error validate(const std::string& prefix = "resolver.") const;
};

/// Checks the key (refused before any request: not_configured when empty,
/// invalid_argument for a malformed key) and the base URL, then spawns.
/// `client` must outlive the resolver.
caf::expected<resolver_actor> spawn_resolver(caf::actor_system& sys,
                                             http_client& client,
                                             resolver_options opts);

} // namespace sail
