// Rotary position embedding kernels: declarations shared by the op binding
// and the backend sources.
//
// Semantics follow transformers' apply_rotary_pos_emb(q, k, cos, sin,
// unsqueeze_dim=1) (rotate_half convention), computed in float32 and rounded
// once to the output dtype:
//   out[..., i]     = x[..., i]     * cos[i]     - x[..., i + h] * sin[i]
//   out[..., i + h] = x[..., i + h] * cos[i + h] + x[..., i]     * sin[i + h]
// with h = head_dim / 2, x = q or k of shape [batch, heads, seq, head_dim]
// (q and k may have different head counts), cos/sin of shape
// [batch or 1, seq, head_dim] broadcast over heads.
//
// Supported dtypes: float32, float16, bfloat16; q, k, cos, sin and the
// outputs share one dtype. Every tensor must have stride 1 in its last
// dimension; the other dimensions may have any strides (e.g. q as the
// transpose of a [batch, seq, heads, head_dim] projection). Outputs may be
// the inputs themselves (q_out is q, k_out is k) for in-place use.
//
// qk_norm_rotary fuses Qwen3's q_norm / k_norm into the same pass: each head
// row x (head_dim elements) is first replaced by
//   x * rsqrt(mean(x^2) + eps) * weight     (q_weight for q, k_weight for k)
// and then rotated as above, all in float32 with one rounding at the end
// (the unfused rms_norm + apply_rotary rounds the normalized row twice on the
// way; the fused result is closer to float64, a few ulp from theirs).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__GNUC__) || defined(__clang__)
#define KB_ROT_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_ROT_HIDDEN
#endif

// ---------------------------------------------------------------------------
// Op entry point (validated in torch_binding.cpp, registered there).
// ---------------------------------------------------------------------------
KB_ROT_HIDDEN void apply_rotary(at::Tensor& q_out, at::Tensor& k_out,
                                const at::Tensor& q, const at::Tensor& k,
                                const at::Tensor& cos, const at::Tensor& sin);
KB_ROT_HIDDEN void qk_norm_rotary(at::Tensor& q_out, at::Tensor& k_out,
                                  const at::Tensor& q, const at::Tensor& k,
                                  const at::Tensor& q_weight,
                                  const at::Tensor& k_weight,
                                  const at::Tensor& cos, const at::Tensor& sin,
                                  double eps);

// ---------------------------------------------------------------------------
// Backend interface: implemented once per backend (rotary_cpu/*.cpp,
// rotary_cuda/*.cu). The backend sources repeat this declaration verbatim
// (they cannot rely on torch-ext/ being on their include path); a mismatch
// shows up as an undefined symbol when the library is loaded.
// ---------------------------------------------------------------------------
namespace kb_rotary {

// Strides in elements. 4-D tensors: {batch, head, seq}; cos/sin: {batch,
// seq} (batch stride 0 when cos/sin broadcast over the batch). The last
// dimension is contiguous everywhere.
struct RotaryArgs {
  int64_t batch;
  int64_t seq;
  int64_t q_heads;
  int64_t k_heads;
  int64_t head_dim;
  int64_t q_stride[3];
  int64_t k_stride[3];
  int64_t q_out_stride[3];
  int64_t k_out_stride[3];
  int64_t cos_stride[2];
  int64_t sin_stride[2];
};

KB_ROT_HIDDEN void launch_rotary(const RotaryArgs& args, at::Tensor& q_out,
                                 at::Tensor& k_out, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& cos,
                                 const at::Tensor& sin);

// q_weight / k_weight: [head_dim], contiguous, of q's dtype.
KB_ROT_HIDDEN void launch_qk_norm_rotary(
    const RotaryArgs& args, float eps, at::Tensor& q_out, at::Tensor& k_out,
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& q_weight,
    const at::Tensor& k_weight, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace kb_rotary
