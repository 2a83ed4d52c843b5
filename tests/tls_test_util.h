// Test certificates for TLS servers in tests, made with the openssl CLI.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace airlock::control::testing {

// A CA and two server certificates made with the openssl CLI: one for localhost/127.0.0.1, one
// for another name.
class Certificates {
 public:
  Certificates() {
    if (std::system("openssl version >/dev/null 2>&1") != 0) return;
    char pattern[] = "/tmp/airlock-upstream-XXXXXX";
    if (!::mkdtemp(pattern)) return;
    dir_ = pattern;
    write("ca.cnf",
          "[req]\ndistinguished_name = dn\nx509_extensions = ca\nprompt = no\n"
          "[dn]\nCN = Airlock Test CA\n"
          "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
          "subjectKeyIdentifier = hash\n");
    write("localhost.ext",
          "subjectAltName = DNS:localhost,IP:127.0.0.1\nextendedKeyUsage = serverAuth\n");
    write("other.ext", "subjectAltName = DNS:other.example\nextendedKeyUsage = serverAuth\n");
    const std::string d = dir_.string();
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    ok_ = run("openssl req -x509 -config " + d + "/ca.cnf" + ec + " -days 2 -keyout " + d +
              "/ca.key -out " + d + "/ca.pem") &&
          leaf("localhost", 2) && leaf("other", 3);
  }
  ~Certificates() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  bool ok() const { return ok_; }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  bool leaf(const std::string& name, int serial) {
    const std::string d = dir_.string();
    return run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "
               "/CN=" +
               name + " -keyout " + d + "/" + name + ".key -out " + d + "/" + name + ".csr") &&
           run("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/ca.pem -CAkey " + d +
               "/ca.key -set_serial " + std::to_string(serial) + " -days 2 -extfile " + d + "/" +
               name + ".ext -out " + d + "/" + name + ".pem");
  }
  bool run(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }

  std::filesystem::path dir_;
  bool ok_ = false;
};

}  // namespace airlock::control::testing
