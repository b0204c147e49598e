// The Sail raw-token wire codec (docs/wire-contract.md): pure functions
// that turn a completer configuration plus a sample into a create request,
// and Sail's JSON responses into typed results or typed errors. No I/O.
//
// The details Sail has not published (marked ASSUMED in the contract) live in
// sail_wire_assumed.hpp; this header is the stable surface.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/net/wire_options.hpp"

namespace sail {

// -- create ---------------------------------------------------------------------

/// Request target of `POST` (create).
inline constexpr std::string_view create_target = "/v1/responses";

/// Request target of `GET` (poll) for a response id: "/v1/responses/<id>", the
/// id percent-encoded except for unreserved characters (A-Z a-z 0-9 - . _ ~).
std::string poll_target(std::string_view response_id);

/// An encoded create request: the JSON body and every header except
/// Authorization, which the transport adds from its secret configuration
/// (see bearer_auth) so that the key never sits in a job or a message.
struct create_request {
  std::string body;
  std::vector<http_header> headers;
};

/// Encodes the create request of one sample.
///
/// Body fields, compact JSON, always in this order (optional ones only when
/// set): model, input ("."), raw_prompt_tokens, max_output_tokens
/// (= effective_max_tokens), temperature, top_p, background, stop,
/// include, prompt_cache_key, metadata {completion_window, LoRA keys, user
/// metadata in key order}. Equal inputs give byte-identical bodies, so a
/// retry resends exactly the same bytes under the same Idempotency-Key.
///
/// With `webhook` (non-empty), metadata also carries completion_webhook and
/// webhook_token (Sail's /webhooks page), after the LoRA keys and before
/// the user's metadata.
///
/// Headers, in order: Content-Type: application/json, Idempotency-Key, then
/// X-Sail-Voyage-Id / X-Sail-Voyage-Span-Id / X-Sail-Voyage-Agent-Id when a
/// voyage is configured.
///
/// The input rules are validate()'s (messages/validation.hpp), which the
/// caller runs first (validate(cfg, models) and validate(req)); encode_create
/// keeps the wire invariants only. Errors (invalid_argument naming the
/// field): `idempotency_key` empty, over 255 characters or not printable
/// ASCII; non-finite temperature/top_p (JSON has neither); a LoRA source
/// (uses_lora()) that is neither `lora` nor a resolved
/// `tinker_lora_signed_url` (field tinker_lora_signed_url); a user metadata
/// key equal to one of `wire`'s LoRA key names; a voyage field that is not a
/// printable header value.
///
/// `wire` chooses the unpublished details (stop field, logprobs switch,
/// LoRA key names: net/wire_options.hpp); the default is the guesses of
/// docs/wire-contract.md.
caf::expected<create_request>
encode_create(const completer_config& cfg, const sample_request& req,
              std::string_view idempotency_key, bool background = true,
              const webhook_endpoint* webhook = nullptr,
              const wire_options& wire = default_wire());

/// The headers of a create (Content-Type, Idempotency-Key, the voyage's),
/// as encode_create sets them: what a pre-encoded body is sent with.
std::vector<http_header> create_headers(const completer_config& cfg,
                                        std::string_view idempotency_key);

/// "Authorization: Bearer <api_key>". Bytes that cannot appear in a header
/// value (controls, CR, LF, non-ASCII) are dropped, so a malformed key can
/// never inject a header; it then simply fails authentication.
http_header bearer_auth(std::string_view api_key);

// -- responses --------------------------------------------------------------------

/// What a response status means to a poller.
enum class response_phase {
  pending,  ///< queued, pending, in_progress, running: keep polling
  terminal, ///< completed, incomplete, failed, cancelled: stop polling
  unknown,  ///< anything else: keep polling until the deadline
};

/// Classifies a response `status` value (exact, case-sensitive match).
response_phase classify_status(std::string_view status) noexcept;

/// The part of a response object a poller needs to decide what to do next.
struct response_state {
  std::string id;
  std::string status;
  response_phase phase = response_phase::unknown;
  /// When Sail completed the response (seconds since the epoch), if the body
  /// says so (wire_assumed D5).
  std::optional<double> completed_at;
};

/// Memory for parsing one response body: parsing allocates many small nodes
/// that all die together, so a monotonic arena; a 4 KiB buffer inside it
/// covers small bodies, bigger ones get blocks from the heap. Values parsed
/// into it live no longer than the arena.
struct response_arena {
  std::array<unsigned char, 4096> buf;
  boost::json::monotonic_resource mr{buf.data(), buf.size()};
};

/// Parses a response body (a create, poll or webhook delivery body) once,
/// for the decoders below: strict RFC 8259, depth limit 32. The value's
/// memory comes from `mr` (a response_arena's, which outlives the value).
/// Not JSON -> inference_error with the body attached.
caf::expected<boost::json::value> parse_response(std::string_view body,
                                                 boost::json::storage_ptr mr);

/// A response body parsed once and kept with the arena its value lives in:
/// for a body that travels on, as a webhook delivery does from the receiver
/// through the pool to the worker. Shared, not copied (the arena cannot
/// move). A value in a reference-counted resource (make_shared_resource)
/// would do as well but costs a count per node: bench/codec_bench.
struct parsed_body {
  response_arena arena;
  boost::json::value doc = boost::json::value(boost::json::storage_ptr(&arena.mr));
};

/// parse_response into a new parsed_body.
caf::expected<std::shared_ptr<const parsed_body>> parse_body(std::string_view body);

/// Decodes `id` and `status` of a parsed response object (create or poll
/// reply, webhook delivery). A non-object, or a missing/empty/non-string id
/// or status -> inference_error with `raw_body` attached.
caf::expected<response_state> decode_state(const boost::json::value& doc,
                                           std::string_view raw_body);

/// parse_response, then decode_state (for a body that is decoded no further).
caf::expected<response_state> decode_state(std::string_view body);

/// Decodes the sample of a terminal response (parsed with parse_response;
/// `raw_body` is only attached to errors).
///
/// `failed` / `cancelled` -> inference_error whose message carries the
/// response's `error` object; a pending status -> inference_error (not
/// finished). Otherwise (completed, incomplete, an unknown or absent status)
/// the output is decoded per wire_assumed::decoder (output_text part,
/// token_ids, logprobs, stop_reason fallbacks); every malformed case ->
/// inference_error. Every inference_error carries the offending body
/// (secrets redacted; bodies over 64 KiB are cut, with a marker). The
/// result's usage is decode_usage's (sail_usage.hpp): unknown when the
/// response has none or a malformed one, which never fails the sample.
/// `wire.layout` chooses where the output is read (net/wire_options.hpp).
caf::expected<tokens_with_logprobs>
decode_result(const boost::json::value& doc, std::string_view raw_body,
              const wire_options& wire = default_wire());

/// parse_response, then decode_result (for a body that is decoded no further).
caf::expected<tokens_with_logprobs>
decode_result(std::string_view body, const wire_options& wire = default_wire());

// -- errors -----------------------------------------------------------------------

/// Sail's error body {"error": {"message", "type", "param", "code"}}. Absent
/// or null members are empty; a numeric code is kept as its decimal text.
struct sail_error_body {
  std::string message;
  std::string type;
  std::string param;
  std::string code;

  friend bool operator==(const sail_error_body&, const sail_error_body&) = default;
};

/// Decodes an error body; nullopt unless the body is a JSON object with an
/// `error` member that is an object (or a bare string, taken as the message).
std::optional<sail_error_body> decode_error_body(std::string_view body);

/// http_error for a non-2xx reply: status and body attached, the message
/// "HTTP <status>" plus the error body's message, type and code when present.
caf::error error_from_status(unsigned status, std::string_view body);

} // namespace sail
