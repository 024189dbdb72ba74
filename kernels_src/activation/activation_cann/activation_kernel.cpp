// Activations (silu, gelu, gelu_tanh, gelu_fast, gelu_quick) and the gated
// *_and_mul forms as Ascend C vector kernels.
//
// NEVER COMPILED BY CANN: no CANN toolkit or NPU was available to the project
// when this was written (see README, "Ascend NPU"). It is written against the
// documented Ascend C API (kernel_operator.h), compiled with g++ against the
// open asc-devkit and run on the project's CPU twin. kernel-builder builds it
// once per arch group, in either CANN flow (as rmsnorm_kernel.cpp):
//   - CANN 8.x ascendc.cmake (ascendc_library): device code only; CANN
//     generates aclrtlaunch_<kernel>.h / aclrtlaunch_<kernel>() for the host.
//   - ASC language (find_package(ASC)): with KB_CANN_FLOW_ASC defined, this
//     file also defines the same aclrtlaunch_<kernel>() host functions.
//
// Math (matches activation_cpu/activation.cpp; 16-bit inputs are widened to
// float32, every step is float32, the result is rounded to T once, RNE):
//   silu(x)       = x / (1 + exp(-x))
//   gelu(x)       = 0.5 x erfc(-x / sqrt 2)            (erf gelu, see Erfc())
//   gelu_tanh(x)  = x / (1 + exp(-2 sqrt(2/pi) (x + 0.044715 x^3)))
//   gelu_fast(x)  = x / (1 + exp(-2 * 0.7978845608 x (1 + 0.044715 x^2)))
//   gelu_quick(x) = x / (1 + exp(-1.702 x))
//   <act>_and_mul: out[..., :d] = act(x[..., :d]) * x[..., d:2d]
// The tanh forms use 0.5 (1 + tanh z) == 1 / (1 + exp(-2z)), as the CPU
// kernel does: no cancellation for negative x and no tanh instruction needed.
//
// Work split: a row of `cols` output elements is cut into tiles of at most
// kTileCols (activation_tiling.h); the rows * tiles work units are split into
// one contiguous range per block (vector core). Consecutive rows are
// `x_stride` / `out_stride` elements apart; the gated ops read the multiplier
// half at x + cols.
//
// Arch differences (kernel-builder defines KB_CANN_ARCH_<GROUP> per compile):
//   c220 (Atlas A2/A3): DataCopyPad moves tiles of any length; bfloat16 works.
//   m200 (Ascend310P):  no DataCopyPad and no bfloat16 vector math: every row,
//                       stride and offset must be whole 32-byte blocks (the
//                       host checks) and the bf16 entry points are empty.

#include "kernel_operator.h"
#include "activation_tiling.h"

#if defined(KB_CANN_ARCH_M200) || (defined(__CCE_AICORE__) && __CCE_AICORE__ == 200)
#define KB_ACT_M200 1
#else
#define KB_ACT_M200 0
#endif

namespace {

using namespace AscendC;
using kb_activation_npu::kQueueDepth;
using kb_activation_npu::kTileCols;

// Must match kb_activation::Activation in torch-ext/torch_binding.h.
enum class ActKind : uint32_t { kSilu = 0, kGelu = 1, kGeluTanh = 2, kGeluFast = 3, kGeluQuick = 4 };

// float32 -> T rounding. m200's API refuses CAST_RINT for float -> half (its
// Cast asserts); CAST_NONE (the plain vconv_f322f16) is documented to round
// as CAST_RINT (nearest even) whenever the conversion loses precision.
#if KB_ACT_M200
constexpr RoundMode kNarrowRound = RoundMode::CAST_NONE;
#else
constexpr RoundMode kNarrowRound = RoundMode::CAST_RINT;
#endif

constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluFastK = 0.7978845608f;
constexpr float kInvSqrt2 = 0.70710678118654752f;

template <typename T>
class KbActivationKernel {
 public:
  __aicore__ inline KbActivationKernel() {}

  __aicore__ inline void Init(GM_ADDR x, GM_ADDR out, uint32_t rows, uint32_t cols,
                              uint32_t x_stride, uint32_t out_stride, ActKind act, bool gated) {
    cols_ = cols;
    x_stride_ = x_stride;
    out_stride_ = out_stride;
    act_ = act;
    gated_ = gated;
    tiles_per_row_ = kb_activation_npu::tiles_per_row(cols);

    // Work units (row, tile) in row-major order; each block takes a range.
    const uint64_t units = static_cast<uint64_t>(rows) * tiles_per_row_;
    const uint64_t blocks = GetBlockNum();
    const uint64_t per_block = (units + blocks - 1) / blocks;
    unit_begin_ = GetBlockIdx() * per_block;
    unit_end_ = unit_begin_ + per_block < units ? unit_begin_ + per_block : units;

    x_gm_.SetGlobalBuffer((__gm__ T*)x);
    out_gm_.SetGlobalBuffer((__gm__ T*)out);
    const uint32_t tc = kb_activation_npu::tile_cols(cols, sizeof(T));
    pipe_.InitBuffer(in_x_, kQueueDepth, tc * sizeof(T));
    pipe_.InitBuffer(out_y_, kQueueDepth, tc * sizeof(T));
    if (gated_) {
      pipe_.InitBuffer(in_b_, kQueueDepth, tc * sizeof(T));
      pipe_.InitBuffer(b_buf_, tc * sizeof(float));
    }
    pipe_.InitBuffer(x_buf_, tc * sizeof(float));
    pipe_.InitBuffer(t1_buf_, tc * sizeof(float));
    pipe_.InitBuffer(t2_buf_, tc * sizeof(float));
    pipe_.InitBuffer(t3_buf_, tc * sizeof(float));
  }

  __aicore__ inline void Process() {
    for (uint64_t u = unit_begin_; u < unit_end_; ++u) {
      const uint64_t row = u / tiles_per_row_;
      const uint32_t col0 = static_cast<uint32_t>(u % tiles_per_row_) * kTileCols;
      const uint32_t len = cols_ - col0 < kTileCols ? cols_ - col0 : kTileCols;
      CopyIn(row * x_stride_ + col0, len);
      Compute(len);
      CopyOut(row * out_stride_ + col0, len);
    }
  }

 private:
  // ---- data movement (GM <-> UB) ----
  __aicore__ inline void Load(const LocalTensor<T>& dst, const GlobalTensor<T>& src, uint32_t n) {
#if KB_ACT_M200
    DataCopy(dst, src, n);  // host guarantees whole 32-byte blocks
#else
    DataCopyExtParams params{1, static_cast<uint32_t>(n * sizeof(T)), 0, 0, 0};
    DataCopyPadExtParams<T> pad{false, 0, 0, 0};
    DataCopyPad(dst, src, params, pad);
#endif
  }

  __aicore__ inline void Store(const GlobalTensor<T>& dst, const LocalTensor<T>& src, uint32_t n) {
#if KB_ACT_M200
    DataCopy(dst, src, n);
#else
    DataCopyExtParams params{1, static_cast<uint32_t>(n * sizeof(T)), 0, 0, 0};
    DataCopyPad(dst, src, params);
#endif
  }

  // float32 <- T (exact) and T <- float32 (round to nearest even).
  __aicore__ inline void ToFloat(const LocalTensor<float>& dst, const LocalTensor<T>& src,
                                 uint32_t n) {
    if constexpr (sizeof(T) == sizeof(float)) {
      Muls(dst, src, 1.0f, n);
    } else {
      Cast(dst, src, RoundMode::CAST_NONE, n);
    }
  }

  __aicore__ inline void FromFloat(const LocalTensor<T>& dst, const LocalTensor<float>& src,
                                   uint32_t n) {
    if constexpr (sizeof(T) == sizeof(float)) {
      Muls(dst, src, 1.0f, n);
    } else {
      Cast(dst, src, kNarrowRound, n);
    }
  }

  __aicore__ inline void CopyIn(uint64_t offset, uint32_t n) {
    LocalTensor<T> x = in_x_.AllocTensor<T>();
    Load(x, x_gm_[offset], n);
    in_x_.EnQue(x);
    if (gated_) {
      LocalTensor<T> b = in_b_.AllocTensor<T>();
      Load(b, x_gm_[offset + cols_], n);  // the multiplier half of the row
      in_b_.EnQue(b);
    }
  }

  __aicore__ inline void CopyOut(uint64_t offset, uint32_t n) {
    LocalTensor<T> y = out_y_.DeQue<T>();
    Store(out_gm_[offset], y, n);
    out_y_.FreeTensor(y);
  }

  // ---- math, all float32 ----
  // y = x / (1 + exp(t)); t holds the exponent argument and is clobbered.
  __aicore__ inline void SigmoidScale(const LocalTensor<float>& y, const LocalTensor<float>& x,
                                      const LocalTensor<float>& t, uint32_t n) {
    Exp(t, t, n);
    Adds(t, t, 1.0f, n);
    Div(y, x, t, n);
  }

  // t = -2 sqrt(2/pi) (x + 0.044715 x^3), rounded step by step as the CPU
  // kernel's expression is (scaling by -2 is exact, so it is folded in).
  __aicore__ inline void GeluTanhArg(const LocalTensor<float>& t, const LocalTensor<float>& x,
                                     uint32_t n) {
    Muls(t, x, 0.044715f, n);
    Mul(t, t, x, n);
    Mul(t, t, x, n);
    Add(t, t, x, n);
    Muls(t, t, -2.0f * kSqrt2OverPi, n);
  }

  // t = -2 (0.7978845608 x) (1 + 0.044715 x^2); u is scratch.
  __aicore__ inline void GeluFastArg(const LocalTensor<float>& t, const LocalTensor<float>& u,
                                     const LocalTensor<float>& x, uint32_t n) {
    Muls(t, x, 0.044715f, n);
    Mul(t, t, x, n);
    Adds(t, t, 1.0f, n);
    Muls(u, x, -2.0f * kGeluFastK, n);
    Mul(t, u, t, n);
  }

  // e = (e + c) * t
  __aicore__ inline void HornerStep(const LocalTensor<float>& e, const LocalTensor<float>& t,
                                    float c, uint32_t n) {
    Adds(e, e, c, n);
    Mul(e, e, t, n);
  }

  // e = erfc(z) for z = |x| / sqrt 2, as t exp(-z^2 + P(t)) with
  // t = 1 / (1 + z/2) and P the degree-9 Chebyshev fit of Numerical Recipes
  // (Press et al., 2nd ed., section 6.2, erfcc): fractional error < 1.2e-7 for
  // every z >= 0 in exact arithmetic. z^2 is taken as 0.5 * x * x (one
  // rounding; squaring the rounded z would double its error). In float32 the
  // exponent's rounding still costs up to ~z^2 * 2^-24 relative error, as the
  // float32 erfcf of the CPU kernel pays for rounding -x / sqrt 2 (CPU-twin
  // measurements: see the validation report). erfc(z) underflows to 0 for
  // z > ~10, where gelu's result is 0 anyway. z is clobbered; t ends in tt.
  __aicore__ inline void Erfc(const LocalTensor<float>& e, const LocalTensor<float>& tt,
                              const LocalTensor<float>& z, const LocalTensor<float>& x,
                              uint32_t n) {
    Muls(tt, z, 0.5f, n);
    Adds(tt, tt, 1.0f, n);
    Duplicate(e, 1.0f, n);
    Div(tt, e, tt, n);  // Div, not Reciprocal: IEEE-rounded on every generation
    // Horner steps written out: no array for the device compiler to place.
    Muls(e, tt, 0.17087277f, n);
    HornerStep(e, tt, -0.82215223f, n);
    HornerStep(e, tt, 1.48851587f, n);
    HornerStep(e, tt, -1.13520398f, n);
    HornerStep(e, tt, 0.27886807f, n);
    HornerStep(e, tt, -0.18628806f, n);
    HornerStep(e, tt, 0.09678418f, n);
    HornerStep(e, tt, 0.37409196f, n);
    HornerStep(e, tt, 1.00002368f, n);
    Adds(e, e, -1.26551223f, n);
    Mul(z, x, x, n);
    Muls(z, z, 0.5f, n);  // z^2, exact scaling
    Sub(e, e, z, n);
    Exp(e, e, n);
    Mul(e, e, tt, n);
  }

  // gelu(x) = 0.5 ((x + |x|) - |x| erfc(|x| / sqrt 2)): equal to
  // 0.5 x erfc(-x / sqrt 2) (erfc(-u) = 2 - erfc(u)), but erfc is only needed
  // at arguments >= 0 and x + |x| (0 or 2x) is exact, so negative x keep full
  // relative accuracy without a compare/select. Result in y.
  __aicore__ inline void Gelu(const LocalTensor<float>& y, const LocalTensor<float>& x,
                              uint32_t n) {
    LocalTensor<float> z = t1_buf_.Get<float>();
    LocalTensor<float> tt = t2_buf_.Get<float>();
    LocalTensor<float> e = t3_buf_.Get<float>();
    Abs(z, x, n);
    Muls(z, z, kInvSqrt2, n);
    Erfc(e, tt, z, x, n);
    Abs(z, x, n);
    Mul(e, z, e, n);  // |x| erfc(|x| / sqrt 2)
    Add(z, x, z, n);  // x + |x|
    Sub(y, z, e, n);
    Muls(y, y, 0.5f, n);
  }

  // y = act(x); t1..t3 are scratch (y may be one of them: t2).
  __aicore__ inline void Activate(const LocalTensor<float>& y, const LocalTensor<float>& x,
                                  uint32_t n) {
    LocalTensor<float> t = t1_buf_.Get<float>();
    switch (act_) {
      case ActKind::kSilu:
        Muls(t, x, -1.0f, n);
        break;
      case ActKind::kGelu:
        Gelu(y, x, n);
        return;
      case ActKind::kGeluTanh:
        GeluTanhArg(t, x, n);
        break;
      case ActKind::kGeluFast:
        GeluFastArg(t, t3_buf_.Get<float>(), x, n);
        break;
      default:  // kGeluQuick
        Muls(t, x, -1.702f, n);
        break;
    }
    SigmoidScale(y, x, t, n);
  }

  __aicore__ inline void Compute(uint32_t n) {
    LocalTensor<float> xf = x_buf_.Get<float>();
    LocalTensor<float> y = t2_buf_.Get<float>();
    LocalTensor<T> x = in_x_.DeQue<T>();
    ToFloat(xf, x, n);
    in_x_.FreeTensor(x);
    Activate(y, xf, n);
    if (gated_) {
      LocalTensor<float> bf = b_buf_.Get<float>();
      LocalTensor<T> b = in_b_.DeQue<T>();
      ToFloat(bf, b, n);
      in_b_.FreeTensor(b);
      Mul(y, y, bf, n);
    }
    LocalTensor<T> out = out_y_.AllocTensor<T>();
    FromFloat(out, y, n);
    out_y_.EnQue(out);
  }

  TPipe pipe_;
  TQue<QuePosition::VECIN, kQueueDepth> in_x_;
  TQue<QuePosition::VECIN, kQueueDepth> in_b_;
  TQue<QuePosition::VECOUT, kQueueDepth> out_y_;
  TBuf<QuePosition::VECCALC> x_buf_;
  TBuf<QuePosition::VECCALC> b_buf_;
  TBuf<QuePosition::VECCALC> t1_buf_;
  TBuf<QuePosition::VECCALC> t2_buf_;
  TBuf<QuePosition::VECCALC> t3_buf_;
  GlobalTensor<T> x_gm_;
  GlobalTensor<T> out_gm_;
  uint32_t cols_ = 0;
  uint32_t x_stride_ = 0;
  uint32_t out_stride_ = 0;
  uint32_t tiles_per_row_ = 1;
  uint64_t unit_begin_ = 0;
  uint64_t unit_end_ = 0;
  ActKind act_ = ActKind::kSilu;
  bool gated_ = false;
};

template <typename T>
__aicore__ inline void run_activation(GM_ADDR x, GM_ADDR out, uint32_t rows, uint32_t cols,
                                      uint32_t x_stride, uint32_t out_stride, ActKind act,
                                      bool gated) {
  KbActivationKernel<T> op;
  op.Init(x, out, rows, cols, x_stride, out_stride, act, gated);
  op.Process();
}

}  // namespace

// ---- entry points: one per op and dtype (kernel names are global symbols) ----
// All take (x, out, rows, cols, x_stride, out_stride); `cols` is the output's
// last dimension (d), so gated ops read rows of 2 * cols inputs.
// Every arch group defines every entry point, so one torch binding links
// against any group's kernels; bf16 entries are empty on m200 (host refuses).

#define KB_ACT_ENTRY(op, kind, gated, suffix, T)                                                  \
  extern "C" __global__ __aicore__ void kb_act_##op##_##suffix(                                   \
      GM_ADDR x, GM_ADDR out, uint32_t rows, uint32_t cols, uint32_t x_stride,                    \
      uint32_t out_stride) {                                                                      \
    run_activation<T>(x, out, rows, cols, x_stride, out_stride, ActKind::kind, gated);            \
  }

#define KB_ACT_EMPTY_ENTRY(op, kind, gated, suffix, T)                                            \
  extern "C" __global__ __aicore__ void kb_act_##op##_##suffix(                                   \
      GM_ADDR x, GM_ADDR out, uint32_t rows, uint32_t cols, uint32_t x_stride,                    \
      uint32_t out_stride) {}

// X(op, kind, gated) for every op of torch-ext/torch_binding.cpp.
#define KB_ACT_FOR_EACH_OP(X, suffix, T)          \
  X(silu_and_mul, kSilu, true, suffix, T)         \
  X(gelu_and_mul, kGelu, true, suffix, T)         \
  X(gelu_tanh_and_mul, kGeluTanh, true, suffix, T) \
  X(silu, kSilu, false, suffix, T)                \
  X(gelu, kGelu, false, suffix, T)                \
  X(gelu_tanh, kGeluTanh, false, suffix, T)       \
  X(gelu_fast, kGeluFast, false, suffix, T)       \
  X(gelu_quick, kGeluQuick, false, suffix, T)

KB_ACT_FOR_EACH_OP(KB_ACT_ENTRY, f32, float)
KB_ACT_FOR_EACH_OP(KB_ACT_ENTRY, f16, half)
#if KB_ACT_M200
KB_ACT_FOR_EACH_OP(KB_ACT_EMPTY_ENTRY, bf16, void)
#else
KB_ACT_FOR_EACH_OP(KB_ACT_ENTRY, bf16, bfloat16_t)
#endif

// ---- ASC language flow: the host launchers CANN 8.x would have generated ----
#if defined(KB_CANN_FLOW_ASC)
#include "acl/acl.h"

#define KB_ACT_LAUNCHER(op, kind, gated, suffix, T)                                               \
  extern "C" uint32_t aclrtlaunch_kb_act_##op##_##suffix(                                         \
      uint32_t blocks, aclrtStream stream, void* x, void* out, uint32_t rows, uint32_t cols,       \
      uint32_t x_stride, uint32_t out_stride) {                                                   \
    kb_act_##op##_##suffix<<<blocks, nullptr, stream>>>((uint8_t*)x, (uint8_t*)out, rows, cols,   \
                                                        x_stride, out_stride);                    \
    return 0;                                                                                     \
  }

KB_ACT_FOR_EACH_OP(KB_ACT_LAUNCHER, f32, float)
KB_ACT_FOR_EACH_OP(KB_ACT_LAUNCHER, f16, half)
KB_ACT_FOR_EACH_OP(KB_ACT_LAUNCHER, bf16, void)
#endif
