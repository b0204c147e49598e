// Scratch directories and files for tests.
#pragma once

#include <filesystem>
#include <string>

namespace sail::test {

/// A fresh directory under $TMPDIR (or /tmp); removed by remove_dir.
std::string make_temp_dir(const std::string& prefix);

/// Removes a directory tree (best effort).
void remove_dir(const std::string& dir);

/// A fresh directory (make_temp_dir("sail-tinker-" + name)), removed with
/// its contents when the object goes.
struct temp_dir {
  std::filesystem::path path;

  explicit temp_dir(const std::string& name);
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  /// The path of `name` in the directory (nothing is created).
  std::string file(const std::string& name) const;

  /// Writes `content` (bytes as they are) to `name` in the directory; its
  /// path.
  std::string write(const std::string& name, const std::string& content) const;
};

/// The bytes of the file at `path` ("" if it cannot be read).
std::string read_file(const std::string& path);

} // namespace sail::test
