// kb_twin: intrinsics with CPU semantics. Each is a template that checks the
// operand types, packs the trailing integer arguments (repeat, strides, ...)
// and calls the type-erased runtime (runtime.h, src/*.cpp). Forms the runtime
// does not know (other argument counts or element types) abort with the name.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include "kernel_bf16.h"
#include "kernel_fp16.h"
#include "kb_twin/intrinsic_macros.h"
#include "kb_twin/runtime.h"

namespace kb_twin {

template <typename P>
constexpr DType dtype_of() {
  using T = std::remove_cv_t<std::remove_pointer_t<std::decay_t<P>>>;
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, half>) return DType::F16;
  else if constexpr (std::is_same_v<T, bfloat16_t>) return DType::BF16;
  else if constexpr (std::is_same_v<T, int16_t>) return DType::S16;
  else if constexpr (std::is_same_v<T, uint16_t>) return DType::U16;
  else if constexpr (std::is_same_v<T, int32_t>) return DType::S32;
  else if constexpr (std::is_same_v<T, uint32_t>) return DType::U32;
  else if constexpr (std::is_same_v<T, int8_t>) return DType::S8;
  else if constexpr (std::is_same_v<T, uint8_t>) return DType::U8;
  else if constexpr (std::is_same_v<T, int64_t>) return DType::S64;
  else if constexpr (std::is_same_v<T, uint64_t>) return DType::U64;
  else return DType::OTHER;
}

// Integer trailing arguments, plus one slot so the array is never empty.
template <typename... R>
inline std::array<uint64_t, sizeof...(R) + 1> pack(R... r) {
  return {static_cast<uint64_t>(r)..., 0};
}

template <typename S>
inline double scalar_value(S s) {
  if constexpr (std::is_arithmetic_v<S>) return static_cast<double>(s);
  else return static_cast<double>(static_cast<float>(s));  // half / bfloat16_t
}

template <typename D, typename S0, typename S1, typename... R>
inline void binary(const char* name, VOp op, D* d, S0* a, S1* b, R... r) {
  auto p = pack(r...);
  VecCall c{name, op, dtype_of<D>(), dtype_of<S0>(), d, a, b, 0.0, p.data(), sizeof...(R)};
  if (dtype_of<S1>() != c.dt_src) c.dt_src = DType::OTHER;
  vec_elementwise(c);
}

template <typename D, typename S, typename V, typename... R>
inline void with_scalar(const char* name, VOp op, D* d, S* a, V v, R... r) {
  auto p = pack(r...);
  VecCall c{name, op, dtype_of<D>(), dtype_of<S>(), d, a, nullptr, scalar_value(v), p.data(),
            sizeof...(R)};
  vec_elementwise(c);
}

template <typename D, typename S, typename... R>
inline void unary(const char* name, VOp op, D* d, S* a, R... r) {
  auto p = pack(r...);
  VecCall c{name, op, dtype_of<D>(), dtype_of<S>(), d, a, nullptr, 0.0, p.data(), sizeof...(R)};
  vec_elementwise(c);
}

template <typename D, typename S, typename... R>
inline void convert(const char* name, DType want_d, DType want_s, Round rnd, D* d, S* s, R... r) {
  auto p = pack(r...);
  const bool ok = dtype_of<D>() == want_d && dtype_of<S>() == want_s;
  vec_convert(name, ok ? want_d : DType::OTHER, want_s, rnd, d, s, p.data(), sizeof...(R));
}

}  // namespace kb_twin

// ---- vector arithmetic: (dst, src0, src1, repeat, 3 block strides, 3 repeat strides)
#define KB_TWIN_BINARY(name, OP)                                              \
  template <typename D, typename S0, typename S1, typename... R>              \
  inline void name(D* d, S0* a, S1* b, R... r) {                              \
    ::kb_twin::binary(#name, ::kb_twin::VOp::OP, d, a, b, r...);              \
  }
KB_TWIN_BINARY(vadd, ADD)
KB_TWIN_BINARY(vsub, SUB)
KB_TWIN_BINARY(vmul, MUL)
KB_TWIN_BINARY(vdiv, DIV)
KB_TWIN_BINARY(vmax, MAX)
KB_TWIN_BINARY(vmin, MIN)
KB_TWIN_BINARY(vand, AND)
KB_TWIN_BINARY(vor, OR)

// ---- (dst, src, scalar, repeat, 2 block strides, 2 repeat strides)
#define KB_TWIN_SCALAR(name, OP)                                              \
  template <typename D, typename S, typename V, typename... R>                \
  inline void name(D* d, S* a, V v, R... r) {                                 \
    ::kb_twin::with_scalar(#name, ::kb_twin::VOp::OP, d, a, v, r...);         \
  }
KB_TWIN_SCALAR(vadds, ADDS)
KB_TWIN_SCALAR(vmuls, MULS)
KB_TWIN_SCALAR(vmaxs, MAXS)
KB_TWIN_SCALAR(vmins, MINS)

// ---- (dst, src, repeat, 2 block strides, 2 repeat strides)
#define KB_TWIN_UNARY(name, OP)                                               \
  template <typename D, typename S, typename... R>                            \
  inline void name(D* d, S* a, R... r) {                                      \
    ::kb_twin::unary(#name, ::kb_twin::VOp::OP, d, a, r...);                  \
  }
KB_TWIN_UNARY(vsqrt, SQRT)
KB_TWIN_UNARY(vexp, EXP)
KB_TWIN_UNARY(vln, LN)
KB_TWIN_UNARY(vabs, ABS)
KB_TWIN_UNARY(vrec, REC)
KB_TWIN_UNARY(vnot, NOT)

// vector_dup(dst, scalar, repeat, dstBlk, srcBlk, dstRep, srcRep)
template <typename D, typename V, typename... R>
inline void vector_dup(D* d, V v, R... r) {
  ::kb_twin::with_scalar("vector_dup", ::kb_twin::VOp::DUP, d, d, v, r...);
}

// vcadd(dst, src, repeat, dstRepStride, srcBlkStride, srcRepStride, accumulate)
template <typename D, typename S, typename... R>
inline void vcadd(D* d, S* s, R... r) {
  auto p = ::kb_twin::pack(r...);
  const bool same = ::kb_twin::dtype_of<D>() == ::kb_twin::dtype_of<S>();
  ::kb_twin::vec_cadd("vcadd", same ? ::kb_twin::dtype_of<D>() : ::kb_twin::DType::OTHER, d, s,
                      p.data(), sizeof...(R));
}
template <typename... A>
inline int64_t get_acc_val(A...) { return ::kb_twin::acc_value(); }

// ---- conversions: vconv_<src>2<dst>[round](dst, src, repeat, 2 blk, 2 rep strides)
#define KB_TWIN_CONV(name, DT, ST, RND)                                                   \
  template <typename D, typename S, typename... R>                                        \
  inline void name(D* d, S* s, R... r) {                                                  \
    ::kb_twin::convert(#name, ::kb_twin::DType::DT, ::kb_twin::DType::ST,                 \
                       ::kb_twin::Round::RND, d, s, r...);                                \
  }
KB_TWIN_CONV(vconv_f162f32, F32, F16, NONE)
KB_TWIN_CONV(vconv_bf162f32, F32, BF16, NONE)
KB_TWIN_CONV(vconv_f322f16, F16, F32, RINT)
KB_TWIN_CONV(vconv_f322f16r, F16, F32, RINT)
KB_TWIN_CONV(vconv_f322f16a, F16, F32, AWAY)
KB_TWIN_CONV(vconv_f322f16f, F16, F32, FLOOR)
KB_TWIN_CONV(vconv_f322f16c, F16, F32, CEIL)
KB_TWIN_CONV(vconv_f322f16z, F16, F32, TRUNC)
KB_TWIN_CONV(vconv_f322f16o, F16, F32, ODD)
KB_TWIN_CONV(vconv_f322bf16r, BF16, F32, RINT)
KB_TWIN_CONV(vconv_f322bf16a, BF16, F32, AWAY)
KB_TWIN_CONV(vconv_f322bf16f, BF16, F32, FLOOR)
KB_TWIN_CONV(vconv_f322bf16c, BF16, F32, CEIL)
KB_TWIN_CONV(vconv_f322bf16z, BF16, F32, TRUNC)

// ---- mask registers and modes
template <typename... A> inline void set_mask_norm(A...) { ::kb_twin::set_mask_mode(false); }
template <typename... A> inline void set_mask_count(A...) { ::kb_twin::set_mask_mode(true); }
inline void set_vector_mask(uint64_t hi, uint64_t lo) { ::kb_twin::set_mask(hi, lo); }
template <typename V> inline void set_mov_pad_val(V v) {
  ::kb_twin::set_pad_value(static_cast<uint64_t>(v));
}
// Atomic accumulation into GM is not modelled: only "off" is accepted.
KB_TWIN_NOOP(set_atomic_none)

// ---- block index / count (set per block by kb_twin::run_blocks)
template <typename... A> inline int64_t get_block_idx(A...) { return ::kb_twin::current_block_idx(); }
template <typename... A> inline int64_t get_block_num(A...) { return ::kb_twin::current_block_num(); }

// ---- DMA between Global Memory and the Unified Buffer
// copy_gm_to_ubuf(dst, src, sid, nBurst, lenBurst, srcStride, dstStride): 32-byte units.
template <typename D, typename S, typename... R>
inline void copy_gm_to_ubuf(D* d, S* s, R... r) {
  auto p = ::kb_twin::pack(r...);
  ::kb_twin::dma_gm_to_ub("copy_gm_to_ubuf", (void*)d, (const void*)s, p.data(), sizeof...(R));
}
template <typename D, typename S, typename... R>
inline void copy_ubuf_to_gm(D* d, S* s, R... r) {
  auto p = ::kb_twin::pack(r...);
  ::kb_twin::dma_ub_to_gm("copy_ubuf_to_gm", (void*)d, (const void*)s, p.data(), sizeof...(R));
}
template <typename D, typename S, typename... R>
inline void copy_ubuf_to_ubuf(D* d, S* s, R... r) {
  auto p = ::kb_twin::pack(r...);
  ::kb_twin::dma_ub_to_ub("copy_ubuf_to_ubuf", (void*)d, (const void*)s, p.data(), sizeof...(R));
}
// The DataCopyPad forms: (dst, src, sid, nBurst, lenBurst bytes, leftPad, rightPad,
// srcGap, dstGap); bNN is the element width the paddings count in.
#define KB_TWIN_PAD_COPY(name, fn, ELEM)                                            \
  template <typename D, typename S, typename... R>                                  \
  inline void name(D* d, S* s, R... r) {                                            \
    auto p = ::kb_twin::pack(r...);                                                 \
    ::kb_twin::fn(#name, ELEM, (void*)d, (const void*)s, p.data(), sizeof...(R));   \
  }
KB_TWIN_PAD_COPY(copy_gm_to_ubuf_align_b8, dma_gm_to_ub_pad, 1)
KB_TWIN_PAD_COPY(copy_gm_to_ubuf_align_b16, dma_gm_to_ub_pad, 2)
KB_TWIN_PAD_COPY(copy_gm_to_ubuf_align_b32, dma_gm_to_ub_pad, 4)
KB_TWIN_PAD_COPY(copy_ubuf_to_gm_align_b8, dma_ub_to_gm_pad, 1)
KB_TWIN_PAD_COPY(copy_ubuf_to_gm_align_b16, dma_ub_to_gm_pad, 2)
KB_TWIN_PAD_COPY(copy_ubuf_to_gm_align_b32, dma_ub_to_gm_pad, 4)

// ---- scalar bit intrinsics (TPipe's event-id allocator uses sff0)
// sff0/sff1: index of the lowest 0/1 bit, -1 when there is none.
inline int64_t sff0(uint64_t v) { return ~v ? __builtin_ctzll(~v) : -1; }
inline int64_t sff1(uint64_t v) { return v ? __builtin_ctzll(v) : -1; }
inline int64_t sbitset0(uint64_t v, int64_t bit) { return static_cast<int64_t>(v & ~(1ull << bit)); }
inline int64_t sbitset1(uint64_t v, int64_t bit) { return static_cast<int64_t>(v | (1ull << bit)); }
inline int64_t bcnt0(uint64_t v) { return 64 - __builtin_popcountll(v); }
inline int64_t bcnt1(uint64_t v) { return __builtin_popcountll(v); }
inline int64_t clz(uint64_t v) { return v ? __builtin_clzll(v) : 64; }
// CTRL register: stored, but only bits the twin reads have an effect (none
// yet; saturation / HF32 / counter-mode-via-CTRL are not modelled).
inline int64_t get_ctrl() { return ::kb_twin::ctrl_value(); }
inline void set_ctrl(uint64_t v) { ::kb_twin::set_ctrl_value(v); }
