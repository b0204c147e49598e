#include "sail_tinker/messages/types.hpp"

namespace sail {

stop_condition stop_condition::tokens(std::vector<int64_t> ids) {
  stop_condition result;
  result.token_ids = std::move(ids);
  return result;
}

stop_condition stop_condition::texts(std::vector<std::string> xs) {
  stop_condition result;
  result.strings = std::move(xs);
  return result;
}

caf::expected<std::vector<double>> tokens_with_logprobs::logprobs() const {
  if (!maybe_logprobs)
    return invalid_argument("maybe_logprobs",
                            "logprobs are not available for this sample");
  return *maybe_logprobs;
}

} // namespace sail
