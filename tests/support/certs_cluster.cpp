#include "support/certs_cluster.hpp"

#include <fstream>
#include <stdexcept>

#include "support/certs.hpp"

namespace sail::test {

namespace {

void must(const std::string& cmd) {
  std::string out;
  if (run_command(cmd, &out) != 0)
    throw std::runtime_error("command failed: " + cmd + "\n" + out);
}

const std::string rsa = "-newkey rsa:2048 -nodes";

void make_ca(const std::string& dir, const std::string& name) {
  must("openssl req -x509 " + rsa + " -keyout '" + dir + "/" + name + ".key' -out '" + dir
       + "/" + name + ".pem' -days 2 -subj '/CN=sail-tinker " + name + "'"
       + " -addext 'basicConstraints=critical,CA:TRUE'"
       + " -addext 'keyUsage=critical,keyCertSign,cRLSign'");
}

cert_files make_leaf(const std::string& dir, const std::string& ca, const std::string& name) {
  cert_files out{dir + "/" + name + ".pem", dir + "/" + name + ".key"};
  must("openssl req -new " + rsa + " -keyout '" + out.key + "' -out '" + dir + "/" + name
       + ".csr' -subj '/CN=" + name + "'");
  {
    std::ofstream ext{dir + "/" + name + ".ext"};
    ext << "basicConstraints=CA:FALSE\n"
        << "keyUsage=critical,digitalSignature,keyEncipherment\n"
        << "extendedKeyUsage=serverAuth,clientAuth\n"
        << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  }
  must("openssl x509 -req -in '" + dir + "/" + name + ".csr' -CA '" + dir + "/" + ca
       + ".pem' -CAkey '" + dir + "/" + ca + ".key' -CAcreateserial -out '" + out.cert
       + "' -days 2 -extfile '" + dir + "/" + name + ".ext'");
  return out;
}

} // namespace

cluster_certs make_cluster_certs(size_t n) {
  cluster_certs out;
  out.dir = make_temp_dir("sail-cluster-certs");
  try {
    make_ca(out.dir, "cluster-ca");
    make_ca(out.dir, "rogue-ca");
    out.ca = out.dir + "/cluster-ca.pem";
    out.rogue_ca = out.dir + "/rogue-ca.pem";
    for (size_t i = 0; i < n; ++i)
      out.peers.push_back(make_leaf(out.dir, "cluster-ca", "peer" + std::to_string(i)));
    out.rogue = make_leaf(out.dir, "rogue-ca", "rogue");
  } catch (...) {
    remove_dir(out.dir);
    throw;
  }
  return out;
}

void remove_cluster_certs(const cluster_certs& certs) {
  if (!certs.dir.empty())
    remove_dir(certs.dir);
}

} // namespace sail::test
