// RMSNorm and fused residual-add + RMSNorm as Ascend C vector kernels.
//
// NEVER COMPILED: no CANN toolkit or NPU was available to the project when this
// was written (see README, "Ascend NPU"). It is written against the documented
// Ascend C API (kernel_operator.h) and is built by kernel-builder once per arch
// group, in either CANN flow:
//   - CANN 8.x ascendc.cmake (ascendc_library): device code only; CANN
//     generates aclrtlaunch_<kernel>.h / aclrtlaunch_<kernel>() for the host.
//   - ASC language (find_package(ASC)): this file is compiled as ASC and, with
//     KB_CANN_FLOW_ASC defined by the generated CMake, also defines the same
//     aclrtlaunch_<kernel>() host functions itself (kernel<<<...>>> launch), so
//     the torch binding (rmsnorm_npu.h) is identical for both flows.
//
// Math (matches torch-ext/torch_binding.h and transformers' RMSNorm):
//   residual_out = (x + residual).to(T)                       (fused only)
//   h   = float(fused ? residual_out : x)
//   y   = T(float(T(h * rsqrt(mean(h^2) + eps))) * float(weight))
// i.e. the normalized value is rounded to T before the weight multiply, as in
// PyTorch's eager reference, and every rounding is round-to-nearest-even.
//
// Work split: each block (vector core) takes a contiguous range of rows; a row
// is processed whole in the Unified Buffer (the host refuses rows that do not
// fit, see ub_bytes_needed() in rmsnorm_tiling.h). Rows are `cols` contiguous
// elements, consecutive rows `*_stride` elements apart.
//
// Arch differences (kernel-builder defines KB_CANN_ARCH_<GROUP> per compile):
//   c220 (Atlas A2/A3): DataCopyPad moves rows of any length; bfloat16 works.
//   m200 (Ascend310P):  no DataCopyPad and no bfloat16 vector math: rows must be
//                       a whole number of 32-byte blocks (the host checks) and
//                       the bf16 entry points are empty (the host refuses bf16).

#include "kernel_operator.h"
#include "rmsnorm_tiling.h"

#if defined(KB_CANN_ARCH_M200) || (defined(__CCE_AICORE__) && __CCE_AICORE__ == 200)
#define KB_RMS_M200 1
#else
#define KB_RMS_M200 0
#endif

namespace {

using namespace AscendC;

constexpr int32_t kQueueDepth = 1;

template <typename T>
class KbRmsNormKernel {
 public:
  __aicore__ inline KbRmsNormKernel() {}

  __aicore__ inline void Init(GM_ADDR x, GM_ADDR residual, GM_ADDR weight, GM_ADDR out,
                              GM_ADDR residual_out, uint32_t rows, uint32_t cols,
                              uint32_t x_stride, uint32_t out_stride, uint32_t res_stride,
                              uint32_t res_out_stride, float eps, bool fused) {
    cols_ = cols;
    cols_aligned_ = kb_rmsnorm_npu::aligned_cols(cols, sizeof(T));
    x_stride_ = x_stride;
    out_stride_ = out_stride;
    res_stride_ = res_stride;
    res_out_stride_ = res_out_stride;
    eps_ = eps;
    inv_cols_ = 1.0f / static_cast<float>(cols);
    fused_ = fused;

    const uint32_t blocks = GetBlockNum();
    const uint32_t per_block = (rows + blocks - 1) / blocks;
    row_begin_ = GetBlockIdx() * per_block;
    row_end_ = row_begin_ + per_block < rows ? row_begin_ + per_block : rows;

    x_gm_.SetGlobalBuffer((__gm__ T*)x);
    w_gm_.SetGlobalBuffer((__gm__ T*)weight);
    out_gm_.SetGlobalBuffer((__gm__ T*)out);
    const uint32_t io_bytes = cols_aligned_ * sizeof(T);
    const uint32_t fp_bytes = cols_aligned_ * sizeof(float);
    pipe_.InitBuffer(in_x_, kQueueDepth, io_bytes);
    pipe_.InitBuffer(out_y_, kQueueDepth, io_bytes);
    if (fused_) {
      res_gm_.SetGlobalBuffer((__gm__ T*)residual);
      res_out_gm_.SetGlobalBuffer((__gm__ T*)residual_out);
      pipe_.InitBuffer(in_res_, kQueueDepth, io_bytes);
      pipe_.InitBuffer(out_res_, kQueueDepth, io_bytes);
    }
    pipe_.InitBuffer(w_buf_, fp_bytes);
    pipe_.InitBuffer(h_buf_, fp_bytes);
    pipe_.InitBuffer(sq_buf_, fp_bytes);
    pipe_.InitBuffer(work_buf_, kb_rmsnorm_npu::reduce_work_floats(cols_aligned_) * sizeof(float));
    pipe_.InitBuffer(sum_buf_, kb_rmsnorm_npu::kBlockBytes);
    pipe_.InitBuffer(one_buf_, kb_rmsnorm_npu::kBlockBytes);
  }

  __aicore__ inline void Process() {
    if (row_begin_ >= row_end_) {
      return;
    }
    LoadWeight();
    for (uint32_t row = row_begin_; row < row_end_; ++row) {
      CopyIn(row);
      Compute();
      CopyOut(row);
    }
  }

 private:
  // ---- data movement (GM <-> UB) ----
  __aicore__ inline void Load(const LocalTensor<T>& dst, const GlobalTensor<T>& src) {
#if KB_RMS_M200
    DataCopy(dst, src, cols_aligned_);  // host guarantees cols == cols_aligned_
#else
    DataCopyExtParams params{1, static_cast<uint32_t>(cols_ * sizeof(T)), 0, 0, 0};
    DataCopyPadExtParams<T> pad{false, 0, 0, 0};
    DataCopyPad(dst, src, params, pad);
#endif
  }

  __aicore__ inline void Store(const GlobalTensor<T>& dst, const LocalTensor<T>& src) {
#if KB_RMS_M200
    DataCopy(dst, src, cols_aligned_);
#else
    DataCopyExtParams params{1, static_cast<uint32_t>(cols_ * sizeof(T)), 0, 0, 0};
    DataCopyPad(dst, src, params);
#endif
  }

  // float32 <- T (exact) and T <- float32 (round to nearest even).
  __aicore__ inline void ToFloat(const LocalTensor<float>& dst, const LocalTensor<T>& src) {
    if constexpr (sizeof(T) == sizeof(float)) {
      Muls(dst, src, 1.0f, cols_);
    } else {
      Cast(dst, src, RoundMode::CAST_NONE, cols_);
    }
  }

  __aicore__ inline void FromFloat(const LocalTensor<T>& dst, const LocalTensor<float>& src) {
    if constexpr (sizeof(T) == sizeof(float)) {
      Muls(dst, src, 1.0f, cols_);
    } else {
#if KB_RMS_M200
      // Ascend310P's float->half conversion has no CAST_RINT (the API refuses it there: found by the CPU
      // twin); CAST_NONE rounds to nearest even when precision is lost, the same result.
      Cast(dst, src, RoundMode::CAST_NONE, cols_);
#else
      Cast(dst, src, RoundMode::CAST_RINT, cols_);
#endif
    }
  }

  __aicore__ inline void LoadWeight() {
    LocalTensor<T> staged = in_x_.AllocTensor<T>();
    Load(staged, w_gm_);
    in_x_.EnQue(staged);
    staged = in_x_.DeQue<T>();
    ToFloat(w_buf_.Get<float>(), staged);
    in_x_.FreeTensor(staged);
  }

  __aicore__ inline void CopyIn(uint32_t row) {
    LocalTensor<T> x = in_x_.AllocTensor<T>();
    Load(x, x_gm_[static_cast<uint64_t>(row) * x_stride_]);
    in_x_.EnQue(x);
    if (fused_) {
      LocalTensor<T> r = in_res_.AllocTensor<T>();
      Load(r, res_gm_[static_cast<uint64_t>(row) * res_stride_]);
      in_res_.EnQue(r);
    }
  }

  __aicore__ inline void Compute() {
    LocalTensor<float> h = h_buf_.Get<float>();
    LocalTensor<float> sq = sq_buf_.Get<float>();
    LocalTensor<float> w = w_buf_.Get<float>();
    LocalTensor<float> sum = sum_buf_.Get<float>();
    LocalTensor<float> one = one_buf_.Get<float>();

    LocalTensor<T> x = in_x_.DeQue<T>();
    ToFloat(h, x);
    in_x_.FreeTensor(x);
    if (fused_) {
      LocalTensor<T> r = in_res_.DeQue<T>();
      ToFloat(sq, r);
      in_res_.FreeTensor(r);
      Add(h, h, sq, cols_);
      LocalTensor<T> r_out = out_res_.AllocTensor<T>();
      FromFloat(r_out, h);  // residual_out = (x + residual).to(T)
      ToFloat(h, r_out);    // normalize the rounded sum, as eager PyTorch does
      out_res_.EnQue(r_out);
    }

    // rstd = 1 / sqrt(sum(h^2) / cols + eps), computed on the vector unit.
    Mul(sq, h, h, cols_);
    ReduceSum<float>(sum, sq, work_buf_.Get<float>(), cols_);
    Muls(sum, sum, inv_cols_, 1);
    Adds(sum, sum, eps_, 1);
    Sqrt(sum, sum, 1);
    Duplicate(one, 1.0f, 8);
    Div(sum, one, sum, 1);
    event_t v_to_s = static_cast<event_t>(GetTPipePtr()->FetchEventID(HardEvent::V_S));
    SetFlag<HardEvent::V_S>(v_to_s);
    WaitFlag<HardEvent::V_S>(v_to_s);
    const float rstd = sum.GetValue(0);

    LocalTensor<T> y = out_y_.AllocTensor<T>();
    Muls(h, h, rstd, cols_);
    if constexpr (sizeof(T) != sizeof(float)) {
      FromFloat(y, h);  // (h * rstd).to(T)
      ToFloat(h, y);
    }
    Mul(h, h, w, cols_);
    FromFloat(y, h);
    out_y_.EnQue(y);
  }

  __aicore__ inline void CopyOut(uint32_t row) {
    LocalTensor<T> y = out_y_.DeQue<T>();
    Store(out_gm_[static_cast<uint64_t>(row) * out_stride_], y);
    out_y_.FreeTensor(y);
    if (fused_) {
      LocalTensor<T> r_out = out_res_.DeQue<T>();
      Store(res_out_gm_[static_cast<uint64_t>(row) * res_out_stride_], r_out);
      out_res_.FreeTensor(r_out);
    }
  }

  TPipe pipe_;
  TQue<QuePosition::VECIN, kQueueDepth> in_x_;
  TQue<QuePosition::VECIN, kQueueDepth> in_res_;
  TQue<QuePosition::VECOUT, kQueueDepth> out_y_;
  TQue<QuePosition::VECOUT, kQueueDepth> out_res_;
  TBuf<QuePosition::VECCALC> w_buf_;
  TBuf<QuePosition::VECCALC> h_buf_;
  TBuf<QuePosition::VECCALC> sq_buf_;
  TBuf<QuePosition::VECCALC> work_buf_;
  TBuf<QuePosition::VECCALC> sum_buf_;
  TBuf<QuePosition::VECCALC> one_buf_;
  GlobalTensor<T> x_gm_;
  GlobalTensor<T> res_gm_;
  GlobalTensor<T> w_gm_;
  GlobalTensor<T> out_gm_;
  GlobalTensor<T> res_out_gm_;
  uint32_t cols_ = 0;
  uint32_t cols_aligned_ = 0;
  uint32_t x_stride_ = 0;
  uint32_t out_stride_ = 0;
  uint32_t res_stride_ = 0;
  uint32_t res_out_stride_ = 0;
  uint32_t row_begin_ = 0;
  uint32_t row_end_ = 0;
  float eps_ = 0.0f;
  float inv_cols_ = 0.0f;
  bool fused_ = false;
};

template <typename T>
__aicore__ inline void run_rms_norm(GM_ADDR x, GM_ADDR residual, GM_ADDR weight, GM_ADDR out,
                                    GM_ADDR residual_out, uint32_t rows, uint32_t cols,
                                    uint32_t x_stride, uint32_t out_stride, uint32_t res_stride,
                                    uint32_t res_out_stride, float eps, bool fused) {
  KbRmsNormKernel<T> op;
  op.Init(x, residual, weight, out, residual_out, rows, cols, x_stride, out_stride, res_stride,
          res_out_stride, eps, fused);
  op.Process();
}

}  // namespace

// ---- entry points: one per dtype and op (kernel names are global symbols) ----
// Every arch group defines every entry point, so one torch binding links
// against any group's kernels; bf16 entries are empty on m200 (host refuses).

#define KB_RMS_ENTRIES(suffix, T)                                                                  \
  extern "C" __global__ __aicore__ void kb_rms_norm_##suffix(                                      \
      GM_ADDR x, GM_ADDR weight, GM_ADDR out, uint32_t rows, uint32_t cols, uint32_t x_stride,      \
      uint32_t out_stride, float eps) {                                                            \
    run_rms_norm<T>(x, nullptr, weight, out, nullptr, rows, cols, x_stride, out_stride, 0, 0, eps, \
                    false);                                                                        \
  }                                                                                                \
  extern "C" __global__ __aicore__ void kb_fused_add_rms_norm_##suffix(                            \
      GM_ADDR x, GM_ADDR residual, GM_ADDR weight, GM_ADDR out, GM_ADDR residual_out,              \
      uint32_t rows, uint32_t cols, uint32_t x_stride, uint32_t out_stride, uint32_t res_stride,   \
      uint32_t res_out_stride, float eps) {                                                        \
    run_rms_norm<T>(x, residual, weight, out, residual_out, rows, cols, x_stride, out_stride,      \
                    res_stride, res_out_stride, eps, true);                                        \
  }

#define KB_RMS_EMPTY_ENTRIES(suffix)                                                               \
  extern "C" __global__ __aicore__ void kb_rms_norm_##suffix(                                      \
      GM_ADDR x, GM_ADDR weight, GM_ADDR out, uint32_t rows, uint32_t cols, uint32_t x_stride,      \
      uint32_t out_stride, float eps) {}                                                           \
  extern "C" __global__ __aicore__ void kb_fused_add_rms_norm_##suffix(                            \
      GM_ADDR x, GM_ADDR residual, GM_ADDR weight, GM_ADDR out, GM_ADDR residual_out,              \
      uint32_t rows, uint32_t cols, uint32_t x_stride, uint32_t out_stride, uint32_t res_stride,   \
      uint32_t res_out_stride, float eps) {}

KB_RMS_ENTRIES(f32, float)
KB_RMS_ENTRIES(f16, half)
#if KB_RMS_M200
KB_RMS_EMPTY_ENTRIES(bf16)
#else
KB_RMS_ENTRIES(bf16, bfloat16_t)
#endif

// ---- ASC language flow: the host launchers CANN 8.x would have generated ----
#if defined(KB_CANN_FLOW_ASC)
#include "acl/acl.h"

#define KB_RMS_LAUNCHERS(suffix)                                                                   \
  extern "C" uint32_t aclrtlaunch_kb_rms_norm_##suffix(                                            \
      uint32_t blocks, aclrtStream stream, void* x, void* weight, void* out, uint32_t rows,         \
      uint32_t cols, uint32_t x_stride, uint32_t out_stride, float eps) {                          \
    kb_rms_norm_##suffix<<<blocks, nullptr, stream>>>((uint8_t*)x, (uint8_t*)weight,               \
                                                      (uint8_t*)out, rows, cols, x_stride,          \
                                                      out_stride, eps);                             \
    return 0;                                                                                      \
  }                                                                                                \
  extern "C" uint32_t aclrtlaunch_kb_fused_add_rms_norm_##suffix(                                  \
      uint32_t blocks, aclrtStream stream, void* x, void* residual, void* weight, void* out,        \
      void* residual_out, uint32_t rows, uint32_t cols, uint32_t x_stride, uint32_t out_stride,     \
      uint32_t res_stride, uint32_t res_out_stride, float eps) {                                   \
    kb_fused_add_rms_norm_##suffix<<<blocks, nullptr, stream>>>(                                   \
        (uint8_t*)x, (uint8_t*)residual, (uint8_t*)weight, (uint8_t*)out, (uint8_t*)residual_out,  \
        rows, cols, x_stride, out_stride, res_stride, res_out_stride, eps);                        \
    return 0;                                                                                      \
  }

KB_RMS_LAUNCHERS(f32)
KB_RMS_LAUNCHERS(f16)
KB_RMS_LAUNCHERS(bf16)
#endif
