#include "support/temp_dir.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace sail::test {

std::string make_temp_dir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp")
                     + "/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed for " + tmpl);
  return tmpl;
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

temp_dir::temp_dir(const std::string& name) : path(make_temp_dir("sail-tinker-" + name)) {
}

temp_dir::~temp_dir() {
  remove_dir(path.string());
}

std::string temp_dir::file(const std::string& name) const {
  return (path / name).string();
}

std::string temp_dir::write(const std::string& name, const std::string& content) const {
  auto p = file(name);
  std::ofstream out{p, std::ios::binary};
  out << content;
  if (!out.flush())
    throw std::runtime_error("cannot write " + p);
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

} // namespace sail::test
