// kb_twin wrapper around the Ascend C API's kernel_operator.h.
//
// It sits first on the include path, includes the devkit's header, then adds
// what the CPU twin needs once the API is declared:
//   - tells the runtime where the API placed the Unified Buffer (for the
//     capacity and alignment checks in src/dma.cpp and src/vec.cpp);
//   - under KB_TWIN_SCAN, re-defines __global__ so that `g++ -E` output marks
//     every kernel entry point with the identifier __kb_twin_entry__.
#pragma once

#include_next "kernel_operator.h"

#include "kb_twin/runtime.h"

namespace kb_twin {
namespace detail {
// UB capacity: the devkit's TOTAL_UB_SIZE for the arch being compiled
// (kernel_utils_constants.h: 192 KiB on 2201, 256 KiB on 2002).
inline void query_ub(uint8_t** base, uint64_t* bytes) {
  *base = AscendC::ConstDefiner::Instance().cpuUB;
  *bytes = AscendC::TOTAL_UB_SIZE;
}
[[maybe_unused]] static const bool ub_registered = register_ub_query(&query_ub);
}  // namespace detail
}  // namespace kb_twin

#if defined(KB_TWIN_SCAN)
#undef __global__
#define __global__ __kb_twin_entry__
#endif
