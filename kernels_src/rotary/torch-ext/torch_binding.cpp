// Op schema, input validation and registration for the rotary kernels.
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

namespace {

constexpr const char* kOp = "apply_rotary";

void check_dtype_device(const at::Tensor& t, const at::Tensor& q,
                        const char* name) {
  TORCH_CHECK(t.scalar_type() == q.scalar_type(), kOp, ": ", name,
              " must have the same dtype as q (", q.scalar_type(), "), got ",
              t.scalar_type(), "; convert it with .to(q.dtype)");
  TORCH_CHECK(t.device() == q.device(), kOp, ": ", name,
              " must be on the same device as q (", q.device(), "), got ",
              t.device());
}

void check_last_dim(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.size(-1) <= 1 || t.stride(-1) == 1, kOp, ": ", name,
              " must be contiguous in its last dimension (stride 1), got "
              "sizes ",
              t.sizes(), " and strides ", t.strides(),
              "; call .contiguous() first");
}

void check_output(const at::Tensor& out, const at::Tensor& input,
                  const char* name, const char* input_name) {
  check_dtype_device(out, input, name);
  TORCH_CHECK(out.sizes() == input.sizes(), kOp, ": ", name,
              " must have the same shape as ", input_name, " (",
              input.sizes(), "), got ", out.sizes());
  check_last_dim(out, name);
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, kOp, ": ",
              name,
              " must not have internally overlapping memory (e.g. an "
              "expanded tensor)");
}

// out may be `input` itself (same memory, same strides: in-place), but must
// not otherwise share memory with any tensor the op reads or writes.
void check_no_overlap(const at::Tensor& out, const char* name,
                      const at::Tensor& other, const char* other_name,
                      bool may_be_same) {
  if (may_be_same && out.data_ptr() == other.data_ptr() &&
      out.strides() == other.strides()) {
    return;
  }
  const auto status = at::get_overlap_status(out, other);
  TORCH_CHECK(status != at::MemOverlapStatus::Full &&
                  status != at::MemOverlapStatus::Partial,
              kOp, ": ", name, " must not share memory with ", other_name,
              may_be_same ? " (except by being that very tensor, for in-place "
                            "use)"
                          : "");
}

void fill_strides(int64_t* dst, const at::Tensor& t) {
  dst[0] = t.stride(0);
  dst[1] = t.stride(1);
  dst[2] = t.stride(2);
}

}  // namespace

void apply_rotary(at::Tensor& q_out, at::Tensor& k_out, const at::Tensor& q,
                  const at::Tensor& k, const at::Tensor& cos,
                  const at::Tensor& sin) {
  const auto dtype = q.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              kOp, ": q must be float32, float16 or bfloat16, got ", dtype);
#if defined(CUDA_KERNEL)
  TORCH_CHECK(q.is_cuda(), kOp, ": this build of the kernel expects CUDA "
              "tensors, got ", q.device());
#elif defined(CPU_KERNEL)
  TORCH_CHECK(q.is_cpu(), kOp, ": this build of the kernel expects CPU "
              "tensors, got ", q.device());
#endif
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4, kOp,
              ": q and k must be 4-D [batch, heads, seq, head_dim], got "
              "shapes ",
              q.sizes(), " and ", k.sizes());
  check_dtype_device(k, q, "k");
  check_dtype_device(cos, q, "cos");
  check_dtype_device(sin, q, "sin");
  const int64_t batch = q.size(0);
  const int64_t seq = q.size(2);
  const int64_t head_dim = q.size(3);
  TORCH_CHECK(k.size(0) == batch && k.size(2) == seq && k.size(3) == head_dim,
              kOp,
              ": k must match q in batch, seq and head_dim (q ", q.sizes(),
              ", k ", k.sizes(), "); only the head counts may differ");
  TORCH_CHECK(head_dim % 2 == 0, kOp, ": head_dim must be even, got ",
              head_dim);
  TORCH_CHECK(cos.dim() == 3 && (cos.size(0) == batch || cos.size(0) == 1) &&
                  cos.size(1) == seq && cos.size(2) == head_dim,
              kOp, ": cos must have shape [", batch, " or 1, ", seq, ", ",
              head_dim, "] ([batch, seq, head_dim], broadcast over heads: "
              "unsqueeze_dim=1), got ",
              cos.sizes());
  TORCH_CHECK(sin.sizes() == cos.sizes(), kOp,
              ": sin must have the same shape as cos (", cos.sizes(),
              "), got ", sin.sizes());
  check_output(q_out, q, "q_out", "q");
  check_output(k_out, k, "k_out", "k");
  check_no_overlap(q_out, "q_out", k_out, "k_out", false);
  check_no_overlap(q_out, "q_out", q, "q", true);
  check_no_overlap(q_out, "q_out", k, "k", false);
  check_no_overlap(q_out, "q_out", cos, "cos", false);
  check_no_overlap(q_out, "q_out", sin, "sin", false);
  check_no_overlap(k_out, "k_out", k, "k", true);
  check_no_overlap(k_out, "k_out", q, "q", false);
  check_no_overlap(k_out, "k_out", cos, "cos", false);
  check_no_overlap(k_out, "k_out", sin, "sin", false);
  if (q.numel() == 0 && k.numel() == 0) {
    return;
  }
  check_last_dim(q, "q");
  check_last_dim(k, "k");
  check_last_dim(cos, "cos");
  check_last_dim(sin, "sin");

  kb_rotary::RotaryArgs args{};
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
  kb_rotary::launch_rotary(args, q_out, k_out, q, k, cos, sin);
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
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
