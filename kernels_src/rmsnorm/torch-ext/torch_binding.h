// RMSNorm kernels: declarations shared by the op binding and the backend
// sources.
//
// Semantics follow transformers' RMSNorm (e.g. LlamaRMSNorm):
//   y = weight * (x_f32 * rsqrt(mean(x_f32^2, -1) + eps)).to(dtype)
// i.e. the variance is computed in float32, the normalized value is rounded
// to the input dtype and then multiplied by the weight (rounded again).
//
// Supported dtypes: float32, float16, bfloat16; input, weight, residual and
// outputs must all share one dtype. Rows are the flattened leading
// dimensions; the last dimension must have stride 1, leading dimensions may
// be strided if they collapse into one row stride. Outputs may alias inputs
// (out with input, residual_out with residual) for in-place use.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__GNUC__) || defined(__clang__)
#define KB_RMS_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_RMS_HIDDEN
#endif

// ---------------------------------------------------------------------------
// Op entry points (validated in torch_binding.cpp, registered there).
// ---------------------------------------------------------------------------

// out = rmsnorm(input) * weight.
KB_RMS_HIDDEN void rms_norm(at::Tensor& out, const at::Tensor& input,
                            const at::Tensor& weight, double eps);

// residual_out = (input + residual).to(dtype);
// out = rmsnorm(residual_out) * weight.
KB_RMS_HIDDEN void fused_add_rms_norm(at::Tensor& out, at::Tensor& residual_out,
                                      const at::Tensor& input,
                                      const at::Tensor& residual,
                                      const at::Tensor& weight, double eps);

// ---------------------------------------------------------------------------
// Backend interface: implemented once per backend (rmsnorm_cpu/*.cpp,
// rmsnorm_cuda/*.cu). The backend sources repeat this declaration verbatim
// (they cannot rely on torch-ext/ being on their include path); a mismatch
// shows up as an undefined symbol when the library is loaded.
// ---------------------------------------------------------------------------
namespace kb_rmsnorm {

// Strides are in elements between consecutive rows; each row has `cols`
// contiguous elements. When `residual` is undefined this is a plain RMSNorm
// (residual_out is then undefined too).
struct RmsNormArgs {
  int64_t rows;
  int64_t cols;
  int64_t in_stride;
  int64_t out_stride;
  int64_t res_stride;
  int64_t res_out_stride;
  float eps;
};

KB_RMS_HIDDEN void launch_rms_norm(const RmsNormArgs& args, at::Tensor& out,
                                   at::Tensor& residual_out,
                                   const at::Tensor& input,
                                   const at::Tensor& residual,
                                   const at::Tensor& weight);

}  // namespace kb_rmsnorm
