// libFuzzer target for the usage decoder (net/sail_usage.hpp): every input
// goes through decode_usage (body form and parsed-object form) and through
// decode_result, whose sample carries the same usage. Nothing may crash, leak
// or trip a sanitizer; a decoded usage always satisfies the message
// invariants (counts >= 0, cached <= input), and a problem means unknown.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/json.hpp>

#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/sail_usage.hpp"

namespace {

void require(bool condition) {
  if (!condition)
    std::abort();
}

void check(const sail::usage_decoding& d) {
  if (d.usage)
    require(d.usage->valid() && d.problem.empty());
  if (!d.problem.empty())
    require(!d.usage);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body{reinterpret_cast<const char*>(data), size};
  auto d = sail::decode_usage(body);
  check(d);
  boost::json::error_code ec;
  auto doc = boost::json::parse(body, ec);
  if (!ec && doc.is_object()) {
    auto d2 = sail::decode_usage(doc.get_object());
    check(d2);
    require(d.usage == d2.usage && d.problem == d2.problem);
    if (auto res = sail::decode_result(doc, body))
      require(res->usage == d.usage);
  }
  return 0;
}
