#include "support/certs.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include <sys/wait.h>

namespace sail::test {

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* f = popen(full.c_str(), "r");
  if (f == nullptr)
    return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0)
    out.append(buf.data(), n);
  int rc = pclose(f);
  if (output != nullptr)
    *output = std::move(out);
  if (rc != -1 && WIFEXITED(rc))
    return WEXITSTATUS(rc);
  return -1;
}

namespace {

void must(const std::string& cmd) {
  std::string out;
  if (run_command(cmd, &out) != 0)
    throw std::runtime_error("command failed: " + cmd + "\n" + out);
}

} // namespace

test_certs make_test_certs(const std::string& dir,
                           const std::vector<std::string>& sans) {
  test_certs out{dir + "/ca.pem", dir + "/server.pem", dir + "/server.key"};
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  must("openssl req -x509 " + ec + " -keyout '" + dir + "/ca.key' -out '"
       + out.ca_cert + "' -days 2 -subj '/CN=sail-tinker test CA'"
       + " -addext 'basicConstraints=critical,CA:TRUE'"
       + " -addext 'keyUsage=critical,keyCertSign,cRLSign'");
  must("openssl req -new " + ec + " -keyout '" + out.server_key + "' -out '" + dir
       + "/server.csr' -subj '/CN=sail-tinker test server'");
  std::string san;
  for (const auto& s : sans)
    san += (san.empty() ? "" : ",") + s;
  {
    std::ofstream ext{dir + "/server.ext"};
    ext << "basicConstraints=CA:FALSE\n"
        << "keyUsage=critical,digitalSignature,keyEncipherment\n"
        << "extendedKeyUsage=serverAuth\n"
        << "subjectAltName=" << san << "\n";
  }
  must("openssl x509 -req -in '" + dir + "/server.csr' -CA '" + out.ca_cert
       + "' -CAkey '" + dir + "/ca.key' -CAcreateserial -out '" + out.server_cert
       + "' -days 2 -extfile '" + dir + "/server.ext'");
  return out;
}

} // namespace sail::test
