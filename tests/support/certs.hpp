// Test-time X.509 material generated with the openssl CLI: a private CA and a
// server certificate signed by it.
#pragma once

#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace sail::test {

struct test_certs {
  std::string ca_cert;      ///< PEM of the CA certificate
  std::string server_cert;  ///< PEM of the server certificate (leaf only)
  std::string server_key;   ///< PEM of the server key
};

/// Generates, in `dir`, a CA and a server certificate for `sans` (OpenSSL
/// subjectAltName syntax, e.g. {"DNS:localhost", "IP:127.0.0.1"}). EC P-256
/// keys, valid for two days. Throws std::runtime_error with openssl's output
/// on failure.
test_certs make_test_certs(const std::string& dir,
                           const std::vector<std::string>& sans);

/// Runs a shell command; returns its exit status and (stdout+stderr) output.
int run_command(const std::string& cmd, std::string* output = nullptr);

} // namespace sail::test
