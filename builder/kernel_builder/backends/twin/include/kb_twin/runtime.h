// kb_twin: type-erased entry points of the CPU runtime (src/*.cpp). The
// intrinsic templates in intrinsics_impl.h normalise their arguments and call
// these; the runtime then works on raw bytes and element codes.
#pragma once

#include <cstdint>

namespace kb_twin {

// Element type codes. OTHER makes the runtime abort with the intrinsic name.
enum class DType : uint8_t { OTHER = 0, F16, BF16, F32, S16, S32, U16, U32, S8, U8, S64, U64 };

enum class VOp : uint8_t {
  ADD, SUB, MUL, DIV, MAX, MIN, AND, OR,      // binary
  ADDS, MULS, MAXS, MINS,                     // with a scalar
  SQRT, EXP, LN, ABS, REC, RELU, RSQRT, NOT,  // unary
  DUP                                         // vector_dup
};

// Rounding of narrowing conversions (the r/a/f/c/z/o suffixes of vconv_*).
enum class Round : uint8_t { RINT, AWAY, FLOOR, CEIL, TRUNC, ODD, NONE };

// One vector instruction: operands, their element types, and the stride
// arguments exactly as the intrinsic received them (nargs of them).
struct VecCall {
  const char* name;
  VOp op;
  DType dt_dst, dt_src;
  void* dst;
  const void* src0;
  const void* src1;
  double scalar;
  const uint64_t* args;
  int nargs;
};

void vec_elementwise(const VecCall& c);
void vec_convert(const char* name, DType dt_dst, DType dt_src, Round rnd, void* dst,
                 const void* src, const uint64_t* args, int nargs);
void vec_cadd(const char* name, DType dt, void* dst, const void* src, const uint64_t* args,
              int nargs);
int64_t acc_value();
int64_t ctrl_value();
void set_ctrl_value(uint64_t v);

// Mask registers.
void set_mask_mode(bool counter);
void set_mask(uint64_t hi, uint64_t lo);
void set_pad_value(uint64_t v);

// DMA. `unit32` copies count lengths/strides in 32-byte blocks; the `align`
// forms (DataCopyPad) count burst lengths in bytes.
void dma_gm_to_ub(const char* name, void* ub, const void* gm, const uint64_t* a, int n);
void dma_ub_to_gm(const char* name, void* gm, const void* ub, const uint64_t* a, int n);
void dma_ub_to_ub(const char* name, void* dst, const void* src, const uint64_t* a, int n);
void dma_gm_to_ub_pad(const char* name, int elem, void* ub, const void* gm, const uint64_t* a,
                      int n);
void dma_ub_to_gm_pad(const char* name, int elem, void* gm, const void* ub, const uint64_t* a,
                      int n);

// Per-block state set by the launcher.
int64_t current_block_idx();
int64_t current_block_num();

// The Unified Buffer the Ascend C API placed its buffers in: its host address
// and capacity. Registered by kb_twin/kernel_operator.h (see there).
using UbQuery = void (*)(uint8_t** base, uint64_t* bytes);
bool register_ub_query(UbQuery q);

}  // namespace kb_twin
