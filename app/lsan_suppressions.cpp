// LeakSanitizer's hook for sanitizer builds of the executable (unused
// otherwise). CAF 0.17.6's OpenSSL module intermittently leaks the BASP broker
// it spawns, with its doormen, when an actor system with the io middleman
// shuts down (seen at the exit of `serve`); the allocations are made inside
// libcaf_openssl. Only that library is suppressed, so every other leak is
// still reported. The test programs do the same (tests/support/lsan_openssl.hpp).
extern "C" const char* __lsan_default_suppressions();
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcaf_openssl.so\n";
}
