// Decoding of a Sail ResponseObject's `usage` (docs/wire-contract.md,
// "Usage"): the billed tokens of one sample. Pure functions, no I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/json/fwd.hpp>

#include "sail_tinker/messages/types.hpp"

namespace sail {

/// What decode_usage found: the usage, or nullopt (unknown) with `problem`
/// saying why when the response carried a `usage` that is malformed.
struct usage_decoding {
  std::optional<sample_usage> usage;
  /// Empty when the usage decoded or the response had none (absent / null:
  /// unknown, nothing wrong); otherwise what was malformed, for a warning.
  std::string problem;
};

/// Decodes `usage` of a response object (OpenAPI ResponseUsage):
/// input_tokens and output_tokens are required non-negative integers;
/// input_tokens_details.cached_tokens and output_tokens_details.
/// reasoning_tokens, when present, are non-negative integers (absent: 0; the
/// schema requires them, a server that leaves them out gets no discount);
/// cached_tokens may not exceed input_tokens. Anything else (a non-object,
/// a string or fractional count, a negative count, a count over 2^53) makes
/// the usage unknown with a problem, never an error: a sample's tokens are
/// good even when its bill is not.
usage_decoding decode_usage(const boost::json::object& response);

/// Same, for a whole response body (bad JSON or a non-object: unknown with a
/// problem).
usage_decoding decode_usage(std::string_view body);

} // namespace sail
