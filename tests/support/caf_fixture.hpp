// A real actor system with sail-tinker's vocabulary registered (no network
// modules), plus binary round-trip helpers.
#pragma once

#include <optional>
#include <vector>

#include <caf/all.hpp>

#include <caf/actor_system.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/messages/type_ids.hpp"

namespace sail::test {

struct caf_fixture {
  sail::system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};

  /// Serializes x; the error (if any) of the save step.
  template <class T>
  caf::error save(const T& x, std::vector<char>& buf) {
    caf::binary_serializer sink{sys, buf};
    return sink(const_cast<T&>(x));
  }

  /// Error of the last roundtrip() that failed.
  caf::error last_error;

  /// Serializes and deserializes x with CAF's binary format; nullopt (and
  /// last_error set) if either step fails.
  template <class T>
  std::optional<T> roundtrip(const T& x) {
    std::vector<char> buf;
    if (auto err = save(x, buf)) {
      last_error = std::move(err);
      return std::nullopt;
    }
    T result;
    caf::binary_deserializer source{sys, buf};
    if (auto err = source(result)) {
      last_error = std::move(err);
      return std::nullopt;
    }
    return result;
  }
};

} // namespace sail::test
