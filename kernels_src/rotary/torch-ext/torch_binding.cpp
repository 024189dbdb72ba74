// Op schema, input validation and registration for the rotary kernels
// (apply_rotary and the fused qk_norm_rotary).
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

namespace {

// Both ops share the checks below; `op` names the one in their messages.
void check_dtype_device(const char* op, const at::Tensor& t,
                        const at::Tensor& q, const char* name) {
  TORCH_CHECK(t.scalar_type() == q.scalar_type(), op, ": ", name,
              " must have the same dtype as q (", q.scalar_type(), "), got ",
              t.scalar_type(), "; convert it with .to(q.dtype)");
  TORCH_CHECK(t.device() == q.device(), op, ": ", name,
              " must be on the same device as q (", q.device(), "), got ",
              t.device());
}

void check_last_dim(const char* op, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.size(-1) <= 1 || t.stride(-1) == 1, op, ": ", name,
              " must be contiguous in its last dimension (stride 1), got "
              "sizes ",
              t.sizes(), " and strides ", t.strides(),
              "; call .contiguous() first");
}

void check_output(const char* op, const at::Tensor& out,
                  const at::Tensor& input, const char* name,
                  const char* input_name) {
  check_dtype_device(op, out, input, name);
  TORCH_CHECK(out.sizes() == input.sizes(), op, ": ", name,
              " must have the same shape as ", input_name, " (",
              input.sizes(), "), got ", out.sizes());
  check_last_dim(op, out, name);
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, op, ": ",
              name,
              " must not have internally overlapping memory (e.g. an "
              "expanded tensor)");
}

// out may be `input` itself (same memory, same strides: in-place), but must
// not otherwise share memory with any tensor the op reads or writes.
void check_no_overlap(const char* op, const at::Tensor& out, const char* name,
                      const at::Tensor& other, const char* other_name,
                      bool may_be_same) {
  if (may_be_same && out.data_ptr() == other.data_ptr() &&
      out.strides() == other.strides()) {
    return;
  }
  const auto status = at::get_overlap_status(out, other);
  TORCH_CHECK(status != at::MemOverlapStatus::Full &&
                  status != at::MemOverlapStatus::Partial,
              op, ": ", name, " must not share memory with ", other_name,
              may_be_same ? " (except by being that very tensor, for in-place "
                            "use)"
                          : "");
}

void fill_strides(int64_t* dst, const at::Tensor& t) {
  dst[0] = t.stride(0);
  dst[1] = t.stride(1);
  dst[2] = t.stride(2);
}

// Validates the rotary operands of either op and fills the kernel arguments;
// false when there is nothing to do (no tokens or no heads).
bool rotary_args(const char* op, kb_rotary::RotaryArgs& args, at::Tensor& q_out,
                 at::Tensor& k_out, const at::Tensor& q, const at::Tensor& k,
                 const at::Tensor& cos, const at::Tensor& sin) {
  const auto dtype = q.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              op, ": q must be float32, float16 or bfloat16, got ", dtype);
#if defined(CUDA_KERNEL)
  TORCH_CHECK(q.is_cuda(), op, ": this build of the kernel expects CUDA "
              "tensors, got ", q.device());
#elif defined(CPU_KERNEL)
  TORCH_CHECK(q.is_cpu(), op, ": this build of the kernel expects CPU "
              "tensors, got ", q.device());
#endif
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4, op,
              ": q and k must be 4-D [batch, heads, seq, head_dim], got "
              "shapes ",
              q.sizes(), " and ", k.sizes());
  check_dtype_device(op, k, q, "k");
  check_dtype_device(op, cos, q, "cos");
  check_dtype_device(op, sin, q, "sin");
  const int64_t batch = q.size(0);
  const int64_t seq = q.size(2);
  const int64_t head_dim = q.size(3);
  TORCH_CHECK(k.size(0) == batch && k.size(2) == seq && k.size(3) == head_dim,
              op,
              ": k must match q in batch, seq and head_dim (q ", q.sizes(),
              ", k ", k.sizes(), "); only the head counts may differ");
  TORCH_CHECK(head_dim % 2 == 0, op, ": head_dim must be even, got ",
              head_dim);
  TORCH_CHECK(cos.dim() == 3 && (cos.size(0) == batch || cos.size(0) == 1) &&
                  cos.size(1) == seq && cos.size(2) == head_dim,
              op, ": cos must have shape [", batch, " or 1, ", seq, ", ",
              head_dim, "] ([batch, seq, head_dim], broadcast over heads: "
              "unsqueeze_dim=1), got ",
              cos.sizes());
  TORCH_CHECK(sin.sizes() == cos.sizes(), op,
              ": sin must have the same shape as cos (", cos.sizes(),
              "), got ", sin.sizes());
  check_output(op, q_out, q, "q_out", "q");
  check_output(op, k_out, k, "k_out", "k");
  check_no_overlap(op, q_out, "q_out", k_out, "k_out", false);
  check_no_overlap(op, q_out, "q_out", q, "q", true);
  check_no_overlap(op, q_out, "q_out", k, "k", false);
  check_no_overlap(op, q_out, "q_out", cos, "cos", false);
  check_no_overlap(op, q_out, "q_out", sin, "sin", false);
  check_no_overlap(op, k_out, "k_out", k, "k", true);
  check_no_overlap(op, k_out, "k_out", q, "q", false);
  check_no_overlap(op, k_out, "k_out", cos, "cos", false);
  check_no_overlap(op, k_out, "k_out", sin, "sin", false);
  if (q.numel() == 0 && k.numel() == 0) {
    return false;
  }
  check_last_dim(op, q, "q");
  check_last_dim(op, k, "k");
  check_last_dim(op, cos, "cos");
  check_last_dim(op, sin, "sin");

  args = kb_rotary::RotaryArgs{};
  args.batch = batch;
  args.seq = seq;
  args.q_heads = q.size(1);
  args.k_heads = k.size(1);
  args.head_dim = head_dim;
  fill_strides(args.q_stride, q);
  fill_strides(args.k_stride, k);
  fill_strides(args.q_out_stride, q_out);
  fill_strides(args.k_out_stride, k_out);
  // Size-1 dimensions may carry any stride; normalize them so the backends
  // can rely on them (batch broadcast of cos/sin, pack alignment checks).
  const auto norm = [](int64_t* s, const at::Tensor& t) {
    for (int i = 0; i < 3; ++i) {
      if (t.size(i) == 1) {
        s[i] = 0;
      }
    }
  };
  norm(args.q_stride, q);
  norm(args.k_stride, k);
  norm(args.q_out_stride, q_out);
  norm(args.k_out_stride, k_out);
  args.cos_stride[0] = cos.size(0) == 1 ? 0 : cos.stride(0);
  args.cos_stride[1] = seq == 1 ? 0 : cos.stride(1);
  args.sin_stride[0] = sin.size(0) == 1 ? 0 : sin.stride(0);
  args.sin_stride[1] = seq == 1 ? 0 : sin.stride(1);
  return true;
}

// q_norm / k_norm weights: one value per element of head_dim, read as packs
// alongside q and k, so they must be dense and of q's dtype (as rms_norm's).
void check_weight(const char* op, const at::Tensor& w, const at::Tensor& q,
                  const char* name) {
  TORCH_CHECK(w.dim() == 1 && w.size(0) == q.size(-1), op, ": ", name,
              " must be 1-D of size head_dim (", q.size(-1), "), got shape ",
              w.sizes());
  TORCH_CHECK(w.scalar_type() == q.scalar_type(), op, ": ", name,
              " must have the same dtype as q (", q.scalar_type(), "), got ",
              w.scalar_type(), "; convert it with ", name, ".to(q.dtype)");
  TORCH_CHECK(w.device() == q.device(), op, ": ", name,
              " must be on the same device as q (", q.device(), "), got ",
              w.device());
  TORCH_CHECK(w.size(0) <= 1 || w.stride(0) == 1, op, ": ", name,
              " must be contiguous");
}

}  // namespace

void apply_rotary(at::Tensor& q_out, at::Tensor& k_out, const at::Tensor& q,
                  const at::Tensor& k, const at::Tensor& cos,
                  const at::Tensor& sin) {
  kb_rotary::RotaryArgs args;
  if (!rotary_args("apply_rotary", args, q_out, k_out, q, k, cos, sin)) {
    return;
  }
  kb_rotary::launch_rotary(args, q_out, k_out, q, k, cos, sin);
}

void qk_norm_rotary(at::Tensor& q_out, at::Tensor& k_out, const at::Tensor& q,
                    const at::Tensor& k, const at::Tensor& q_weight,
                    const at::Tensor& k_weight, const at::Tensor& cos,
                    const at::Tensor& sin, double eps) {
  constexpr const char* op = "qk_norm_rotary";
  // Shapes and dtypes first, so a bad weight is reported even for empty q/k.
  kb_rotary::RotaryArgs args;
  const bool work = rotary_args(op, args, q_out, k_out, q, k, cos, sin);
  check_weight(op, q_weight, q, "q_weight");
  check_weight(op, k_weight, q, "k_weight");
  TORCH_CHECK(eps >= 0.0, op, ": eps must be non-negative, got ", eps);
  check_no_overlap(op, q_out, "q_out", q_weight, "q_weight", false);
  check_no_overlap(op, q_out, "q_out", k_weight, "k_weight", false);
  check_no_overlap(op, k_out, "k_out", q_weight, "q_weight", false);
  check_no_overlap(op, k_out, "k_out", k_weight, "k_weight", false);
  if (!work) {
    return;
  }
  kb_rotary::launch_qk_norm_rotary(args, static_cast<float>(eps), q_out, k_out,
                                   q, k, q_weight, k_weight, cos, sin);
}

#if defined(CPU_KERNEL)
#define KB_ROT_DEVICE c10::DeviceType::CPU
#elif defined(CUDA_KERNEL)
#define KB_ROT_DEVICE c10::DeviceType::CUDA
#endif

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def(
      "apply_rotary(Tensor! q_out, Tensor! k_out, Tensor q, Tensor k, "
      "Tensor cos, Tensor sin) -> ()");
#if defined(KB_ROT_DEVICE)
  ops.impl("apply_rotary", KB_ROT_DEVICE, &apply_rotary);
#endif
  ops.def(
      "qk_norm_rotary(Tensor! q_out, Tensor! k_out, Tensor q, Tensor k, "
      "Tensor q_weight, Tensor k_weight, Tensor cos, Tensor sin, float eps) "
      "-> ()");
#if defined(KB_ROT_DEVICE)
  ops.impl("qk_norm_rotary", KB_ROT_DEVICE, &qk_norm_rotary);
#endif
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
