// Op schemas, input validation and registration for the RMSNorm kernels.
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

#if defined(CANN_KERNEL)
// The Ascend NPU launcher (kb_rmsnorm::launch_rms_norm): host C++ against
// torch_npu, launching the Ascend C kernels of rmsnorm_cann/.
#include "rmsnorm_cann/rmsnorm_npu.h"
#endif

namespace {

struct RowView {
  int64_t rows;
  int64_t cols;
  int64_t stride;  // elements between consecutive rows
};

RowView row_view(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() >= 1, op, ": ", name,
              " must have at least one dimension, got a 0-d tensor");
  const int64_t cols = t.size(-1);
  TORCH_CHECK(cols <= 1 || t.stride(-1) == 1, op, ": ", name,
              " must be contiguous in its last dimension (stride 1), got "
              "stride ",
              t.stride(-1), "; call .contiguous() first");
  int64_t rows = 1;
  int64_t stride = cols;
  int64_t expected = -1;  // stride the next-outer dimension must have
  for (int64_t i = t.dim() - 2; i >= 0; --i) {
    const int64_t size = t.size(i);
    if (size == 1) {
      continue;
    }
    if (expected < 0) {
      stride = t.stride(i);
    } else {
      TORCH_CHECK(t.stride(i) == expected, op, ": ", name,
                  " has leading dimensions that cannot be flattened into "
                  "rows (sizes ",
                  t.sizes(), ", strides ", t.strides(),
                  "); call .contiguous() first");
    }
    expected = t.stride(i) * size;
    rows *= size;
  }
  return {rows, cols, stride};
}

void check_like(const at::Tensor& t, const at::Tensor& input, const char* op,
                const char* name) {
  TORCH_CHECK(t.scalar_type() == input.scalar_type(), op, ": ", name,
              " must have the same dtype as input (", input.scalar_type(),
              "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == input.device(), op, ": ", name,
              " must be on the same device as input (", input.device(),
              "), got ", t.device());
  TORCH_CHECK(t.sizes() == input.sizes(), op, ": ", name,
              " must have the same shape as input (", input.sizes(), "), got ",
              t.sizes());
}

void check_output(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(at::has_internal_overlap(t) != at::MemOverlap::Yes, op, ": ",
              name,
              " must not have internally overlapping memory (e.g. an "
              "expanded tensor)");
}

void check_input_and_weight(const at::Tensor& input, const at::Tensor& weight,
                            double eps, const char* op) {
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              op, ": input must be float32, float16 or bfloat16, got ", dtype);
#if defined(CUDA_KERNEL)
  TORCH_CHECK(input.is_cuda(), op, ": this build of the kernel expects CUDA "
              "tensors, got ", input.device());
#elif defined(CPU_KERNEL)
  TORCH_CHECK(input.is_cpu(), op, ": this build of the kernel expects CPU "
              "tensors, got ", input.device());
#elif defined(CANN_KERNEL)
  TORCH_CHECK(input.device().type() == c10::DeviceType::PrivateUse1, op,
              ": this build of the kernel expects NPU tensors, got ",
              input.device());
#endif
  TORCH_CHECK(input.dim() >= 1, op,
              ": input must have at least one dimension, got a 0-d tensor");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == input.size(-1), op,
              ": weight must be 1-D with size equal to the last dimension of "
              "input (",
              input.size(-1), "), got shape ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == dtype, op,
              ": weight must have the same dtype as input (", dtype,
              "), got ", weight.scalar_type(),
              "; convert it with weight.to(input.dtype)");
  TORCH_CHECK(weight.device() == input.device(), op,
              ": weight must be on the same device as input (",
              input.device(), "), got ", weight.device());
  TORCH_CHECK(weight.size(0) <= 1 || weight.stride(0) == 1, op,
              ": weight must be contiguous");
  TORCH_CHECK(eps >= 0.0, op, ": eps must be non-negative, got ", eps);
}

}  // namespace

void rms_norm(at::Tensor& out, const at::Tensor& input,
              const at::Tensor& weight, double eps) {
  constexpr const char* op = "rms_norm";
  check_input_and_weight(input, weight, eps, op);
  check_like(out, input, op, "out");
  check_output(out, op, "out");
  if (out.numel() == 0) {
    return;
  }
  const RowView in_view = row_view(input, op, "input");
  const RowView out_view = row_view(out, op, "out");
  kb_rmsnorm::RmsNormArgs args{in_view.rows,   in_view.cols,
                               in_view.stride, out_view.stride,
                               0,              0,
                               static_cast<float>(eps)};
  at::Tensor no_residual;
  at::Tensor no_residual_out;
  kb_rmsnorm::launch_rms_norm(args, out, no_residual_out, input, no_residual,
                              weight);
}

void fused_add_rms_norm(at::Tensor& out, at::Tensor& residual_out,
                        const at::Tensor& input, const at::Tensor& residual,
                        const at::Tensor& weight, double eps) {
  constexpr const char* op = "fused_add_rms_norm";
  check_input_and_weight(input, weight, eps, op);
  check_like(out, input, op, "out");
  check_like(residual, input, op, "residual");
  check_like(residual_out, input, op, "residual_out");
  check_output(out, op, "out");
  check_output(residual_out, op, "residual_out");
  const auto overlap = at::get_overlap_status(out, residual_out);
  TORCH_CHECK(overlap != at::MemOverlapStatus::Full &&
                  overlap != at::MemOverlapStatus::Partial,
              op, ": out and residual_out must not share memory");
  if (out.numel() == 0) {
    return;
  }
  const RowView in_view = row_view(input, op, "input");
  const RowView out_view = row_view(out, op, "out");
  const RowView res_view = row_view(residual, op, "residual");
  const RowView res_out_view = row_view(residual_out, op, "residual_out");
  kb_rmsnorm::RmsNormArgs args{in_view.rows,    in_view.cols,
                               in_view.stride,  out_view.stride,
                               res_view.stride, res_out_view.stride,
                               static_cast<float>(eps)};
  kb_rmsnorm::launch_rms_norm(args, out, residual_out, input, residual,
                              weight);
}

#if defined(CPU_KERNEL)
#define KB_RMS_DEVICE c10::DeviceType::CPU
#elif defined(CUDA_KERNEL)
#define KB_RMS_DEVICE c10::DeviceType::CUDA
#endif

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("rms_norm(Tensor! out, Tensor input, Tensor weight, float eps) -> ()");
  ops.def(
      "fused_add_rms_norm(Tensor! out, Tensor! residual_out, Tensor input, "
      "Tensor residual, Tensor weight, float eps) -> ()");
#if defined(KB_RMS_DEVICE)
  ops.impl("rms_norm", KB_RMS_DEVICE, &rms_norm);
  ops.impl("fused_add_rms_norm", KB_RMS_DEVICE, &fused_add_rms_norm);
#endif
}

#if defined(CANN_KERNEL)
// torch_npu registers the NPU as the PrivateUse1 device.
TORCH_LIBRARY_IMPL_EXPAND(TORCH_EXTENSION_NAME, PrivateUse1, ops) {
  ops.impl("rms_norm", &rms_norm);
  ops.impl("fused_add_rms_norm", &fused_add_rms_norm);
}
#endif

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
