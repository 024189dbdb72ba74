// kb_twin runtime: state shared by the src/*.cpp files (one core at a time).
#pragma once

#include <cstdint>

#include "kb_twin/intrinsic_macros.h"  // unimplemented(), refuse()
#include "kb_twin/runtime.h"

namespace kb_twin {

struct CoreState {
  bool counter_mode = false;          // set_mask_count / set_mask_norm
  uint64_t mask_hi = ~0ull;           // set_vector_mask(hi, lo)
  uint64_t mask_lo = ~0ull;
  uint64_t pad_value = 0;             // set_mov_pad_val
  int64_t acc = 0;                    // vcadd accumulate result (get_acc_val)
  uint64_t ctrl = 0;                  // CTRL special register (get_ctrl/set_ctrl)
  int64_t block_idx = 0;
  int64_t block_num = 1;
  uint8_t* ub_base = nullptr;         // Unified Buffer as placed by the API
  uint64_t ub_bytes = 0;
};

CoreState& core();

// Refuses (aborts) unless [p, p+len) lies inside the Unified Buffer.
void check_ub_range(const char* call, const void* p, uint64_t len);
// Refuses unless p is 32-byte aligned relative to the UB base.
void check_ub_aligned(const char* call, const void* p);

int elem_bytes(DType t);
const char* dtype_name(DType t);

}  // namespace kb_twin
