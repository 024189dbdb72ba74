// Activation kernels: declarations shared by the op binding and the backend
// sources.
//
// All ops take an output tensor first and write into it ("out-parameter
// style"); they return nothing. Supported dtypes: float32, float16, bfloat16
// (output dtype == input dtype); math is done in float32.
//
// Layout: the last dimension must have stride 1; the leading dimensions may
// be arbitrarily strided as long as they collapse into a single row stride
// (e.g. `x[..., :n]` or `x[::2]` of a contiguous tensor).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__GNUC__) || defined(__clang__)
#define KB_ACT_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_ACT_HIDDEN
#endif

// ---------------------------------------------------------------------------
// Op entry points (validated in torch_binding.cpp, registered there).
// ---------------------------------------------------------------------------

// out[..., d] = act(input[..., :d]) * input[..., d:]  with input[..., 2d].
KB_ACT_HIDDEN void silu_and_mul(at::Tensor& out, const at::Tensor& input);
KB_ACT_HIDDEN void gelu_and_mul(at::Tensor& out, const at::Tensor& input);
KB_ACT_HIDDEN void gelu_tanh_and_mul(at::Tensor& out, const at::Tensor& input);

// out = act(input), same shape.
KB_ACT_HIDDEN void silu(at::Tensor& out, const at::Tensor& input);
KB_ACT_HIDDEN void gelu(at::Tensor& out, const at::Tensor& input);
KB_ACT_HIDDEN void gelu_tanh(at::Tensor& out, const at::Tensor& input);
KB_ACT_HIDDEN void gelu_fast(at::Tensor& out, const at::Tensor& input);
KB_ACT_HIDDEN void gelu_quick(at::Tensor& out, const at::Tensor& input);

// ---------------------------------------------------------------------------
// Backend interface: implemented once per backend (activation_cpu/*.cpp,
// activation_cuda/*.cu). The backend sources repeat these declarations
// verbatim (they cannot rely on torch-ext/ being on their include path), so
// keep them in sync; a mismatch shows up as an undefined symbol at load time.
// ---------------------------------------------------------------------------
namespace kb_activation {

// Must match the enum in the backend sources.
enum class Activation : int {
  kSilu = 0,       // x * sigmoid(x)
  kGelu = 1,       // 0.5 * x * (1 + erf(x / sqrt(2)))
  kGeluTanh = 2,   // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
  kGeluFast = 3,   // 0.5 * x * (1 + tanh(0.7978845608 * x * (1 + 0.044715 x^2)))
  kGeluQuick = 4,  // x * sigmoid(1.702 x)
};

// input viewed as [rows, 2*d] (row stride in_stride elements), out as
// [rows, d] (row stride out_stride). Both have a unit last-dim stride.
KB_ACT_HIDDEN void launch_act_and_mul(Activation act, at::Tensor& out,
                                      const at::Tensor& input, int64_t rows,
                                      int64_t d, int64_t in_stride,
                                      int64_t out_stride);

// input and out viewed as [rows, d] with the given row strides.
KB_ACT_HIDDEN void launch_act(Activation act, at::Tensor& out,
                              const at::Tensor& input, int64_t rows,
                              int64_t d, int64_t in_stride,
                              int64_t out_stride);

}  // namespace kb_activation
