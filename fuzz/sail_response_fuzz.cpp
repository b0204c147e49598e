// libFuzzer target for the Sail response decoders: every input goes through
// decode_state, decode_result (string and parsed-value forms, both response
// layouts) and decode_error_body. Nothing may crash, leak or trip a
// sanitizer, and every failure must be a typed sail error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/json.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/sail_codec.hpp"

namespace {

void require(bool condition) {
  if (!condition)
    std::abort();
}

template <class T>
void check_inference_error(const caf::expected<T>& res) {
  if (!res)
    require(sail::code_of(res.error()) == sail::errc::inference_error
            && sail::info_of(res.error()) != nullptr);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body{reinterpret_cast<const char*>(data), size};
  check_inference_error(sail::decode_state(body));
  auto res = sail::decode_result(body);
  check_inference_error(res);
  if (res) {
    // A decoded sample always satisfies the message invariants.
    for (auto t : res->tokens)
      require(t >= 0);
    if (res->maybe_logprobs)
      require(res->maybe_logprobs->size() == res->tokens.size());
    require(!res->stop_reason.empty());
  }
  boost::json::error_code ec;
  auto doc = boost::json::parse(body, ec);
  if (!ec) {
    auto res2 = sail::decode_result(doc, body);
    require(static_cast<bool>(res) == static_cast<bool>(res2));
    if (res && res2)
      require(*res == *res2);
    check_inference_error(sail::decode_state(doc, body));
  }
  // The other response layout ([wire] layout = "top_level"): the same rules.
  sail::wire_options top;
  top.layout = "top_level";
  auto res3 = sail::decode_result(body, top);
  check_inference_error(res3);
  if (res3 && res3->maybe_logprobs)
    require(res3->maybe_logprobs->size() == res3->tokens.size());
  if (auto eb = sail::decode_error_body(body))
    (void) eb->message.size();
  auto err = sail::error_from_status(400, body);
  require(sail::code_of(err) == sail::errc::http_error);
  return 0;
}
