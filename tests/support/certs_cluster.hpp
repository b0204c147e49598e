// Test-time X.509 material for mutual TLS between cluster nodes, generated
// with the openssl CLI: a cluster CA with node/trainer certificates (usable
// as client and server), and a second, rogue CA with its own certificate.
#pragma once

#include <string>
#include <vector>

namespace sail::test {

/// One certificate (leaf) and its key, as file paths.
struct cert_files {
  std::string cert;
  std::string key;
};

struct cluster_certs {
  std::string dir;
  std::string ca;                 ///< cluster CA certificate (PEM path)
  std::vector<cert_files> peers;  ///< signed by the cluster CA
  std::string rogue_ca;           ///< an unrelated CA
  cert_files rogue;               ///< signed by the rogue CA
};

/// Generates a cluster CA with `n` peer certificates and a rogue CA with one
/// certificate in a fresh temporary directory (RSA 2048, valid two days).
/// Throws std::runtime_error with openssl's output on failure.
cluster_certs make_cluster_certs(size_t n);

/// Removes the directory of `certs`.
void remove_cluster_certs(const cluster_certs& certs);

} // namespace sail::test
