// Include in exactly one source file of a test program that stops actor
// systems with caf::openssl links (it defines LeakSanitizer's hook).
//
// CAF 0.17.6's OpenSSL module leaks its session objects (and with them a
// BASP broker) when an actor system stops while a TLS handshake is under way:
// allocations made inside libcaf_openssl. Suppressed for such programs only,
// so every other leak is still reported.
#pragma once

extern "C" const char* __lsan_default_suppressions();
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcaf_openssl.so\n";
}
