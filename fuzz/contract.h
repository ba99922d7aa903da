// CHECK_CONTRACT for the fuzz targets: a broken contract says which, then aborts (libFuzzer keeps
// the input as a crash).
#ifndef SPINDLE_FUZZ_CONTRACT_H_
#define SPINDLE_FUZZ_CONTRACT_H_

#include <cstdio>
#include <cstdlib>

#define CHECK_CONTRACT(condition)                                                           \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      std::fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)

#endif  // SPINDLE_FUZZ_CONTRACT_H_
