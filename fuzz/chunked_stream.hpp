// A SyncReadStream over the fuzz input, for the targets that feed Beast's
// parsers: what a socket looks like to Beast, `chunk` bytes per read_some.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

namespace sail::fuzz {

/// Serves `data` `chunk` bytes per read_some (all of it when chunk is 0),
/// then EOF.
struct chunked_stream {
  std::string_view data;
  size_t chunk = 0;

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    if (data.empty()) {
      ec = boost::asio::error::eof;
      return 0;
    }
    auto n = chunk == 0 ? data.size() : std::min(chunk, data.size());
    n = boost::asio::buffer_copy(buffers, boost::asio::buffer(data.data(), n));
    data.remove_prefix(n);
    return n;
  }

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    auto n = read_some(buffers, ec);
    if (ec)
      throw boost::system::system_error{ec};
    return n;
  }
};

} // namespace sail::fuzz
