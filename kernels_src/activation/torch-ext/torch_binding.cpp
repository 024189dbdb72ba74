// Op schemas, input validation and registration for the activation kernels.
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

#if defined(CANN_KERNEL)
// The Ascend NPU launchers (kb_activation::launch_act_and_mul / launch_act):
// host C++ against torch_npu, launching the Ascend C kernels of
// activation_cann/.
#include "activation_cann/activation_npu.h"
#endif

namespace {

using kb_activation::Activation;

// A tensor seen as a 2-D [rows, cols] matrix with unit column stride.
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

void check_common(const at::Tensor& out, const at::Tensor& input,
                  const char* op) {
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              op, ": input must be float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(out.scalar_type() == dtype, op,
              ": out must have the same dtype as input (", dtype, "), got ",
              out.scalar_type());
  TORCH_CHECK(out.device() == input.device(), op,
              ": out and input must be on the same device, got ", out.device(),
              " and ", input.device());
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
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, op,
              ": out must not have internally overlapping memory (e.g. an "
              "expanded tensor)");
}

void act_and_mul(Activation act, at::Tensor& out, const at::Tensor& input,
                 const char* op) {
  check_common(out, input, op);
  TORCH_CHECK(input.dim() >= 1 && input.size(-1) % 2 == 0, op,
              ": the last dimension of input must be even (2 * d), got shape ",
              input.sizes());
  auto expected = input.sizes().vec();
  expected.back() /= 2;
  TORCH_CHECK(out.sizes() == at::IntArrayRef(expected), op,
              ": out must have shape ", at::IntArrayRef(expected),
              " (input shape with the last dimension halved), got ",
              out.sizes());
  if (out.numel() == 0) {
    return;
  }
  const RowView in_view = row_view(input, op, "input");
  const RowView out_view = row_view(out, op, "out");
  kb_activation::launch_act_and_mul(act, out, input, out_view.rows,
                                    out_view.cols, in_view.stride,
                                    out_view.stride);
}

void act_unary(Activation act, at::Tensor& out, const at::Tensor& input,
               const char* op) {
  check_common(out, input, op);
  TORCH_CHECK(out.sizes() == input.sizes(), op,
              ": out must have the same shape as input (", input.sizes(),
              "), got ", out.sizes());
  if (out.numel() == 0) {
    return;
  }
  if (input.dim() == 0) {
    // Scalars: treat as a single element row.
    kb_activation::launch_act(act, out, input, 1, 1, 1, 1);
    return;
  }
  const RowView in_view = row_view(input, op, "input");
  const RowView out_view = row_view(out, op, "out");
  kb_activation::launch_act(act, out, input, out_view.rows, out_view.cols,
                            in_view.stride, out_view.stride);
}

}  // namespace

void silu_and_mul(at::Tensor& out, const at::Tensor& input) {
  act_and_mul(Activation::kSilu, out, input, "silu_and_mul");
}
void gelu_and_mul(at::Tensor& out, const at::Tensor& input) {
  act_and_mul(Activation::kGelu, out, input, "gelu_and_mul");
}
void gelu_tanh_and_mul(at::Tensor& out, const at::Tensor& input) {
  act_and_mul(Activation::kGeluTanh, out, input, "gelu_tanh_and_mul");
}
void silu(at::Tensor& out, const at::Tensor& input) {
  act_unary(Activation::kSilu, out, input, "silu");
}
void gelu(at::Tensor& out, const at::Tensor& input) {
  act_unary(Activation::kGelu, out, input, "gelu");
}
void gelu_tanh(at::Tensor& out, const at::Tensor& input) {
  act_unary(Activation::kGeluTanh, out, input, "gelu_tanh");
}
void gelu_fast(at::Tensor& out, const at::Tensor& input) {
  act_unary(Activation::kGeluFast, out, input, "gelu_fast");
}
void gelu_quick(at::Tensor& out, const at::Tensor& input) {
  act_unary(Activation::kGeluQuick, out, input, "gelu_quick");
}

#if defined(CPU_KERNEL)
#define KB_ACT_DEVICE c10::DeviceType::CPU
#elif defined(CUDA_KERNEL)
#define KB_ACT_DEVICE c10::DeviceType::CUDA
#endif

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("silu_and_mul(Tensor! out, Tensor input) -> ()");
  ops.def("gelu_and_mul(Tensor! out, Tensor input) -> ()");
  ops.def("gelu_tanh_and_mul(Tensor! out, Tensor input) -> ()");
  ops.def("silu(Tensor! out, Tensor input) -> ()");
  ops.def("gelu(Tensor! out, Tensor input) -> ()");
  ops.def("gelu_tanh(Tensor! out, Tensor input) -> ()");
  ops.def("gelu_fast(Tensor! out, Tensor input) -> ()");
  ops.def("gelu_quick(Tensor! out, Tensor input) -> ()");
#if defined(KB_ACT_DEVICE)
  ops.impl("silu_and_mul", KB_ACT_DEVICE, &silu_and_mul);
  ops.impl("gelu_and_mul", KB_ACT_DEVICE, &gelu_and_mul);
  ops.impl("gelu_tanh_and_mul", KB_ACT_DEVICE, &gelu_tanh_and_mul);
  ops.impl("silu", KB_ACT_DEVICE, &silu);
  ops.impl("gelu", KB_ACT_DEVICE, &gelu);
  ops.impl("gelu_tanh", KB_ACT_DEVICE, &gelu_tanh);
  ops.impl("gelu_fast", KB_ACT_DEVICE, &gelu_fast);
  ops.impl("gelu_quick", KB_ACT_DEVICE, &gelu_quick);
#endif
}

#if defined(CANN_KERNEL)
// torch_npu registers the NPU as the PrivateUse1 device.
TORCH_LIBRARY_IMPL_EXPAND(TORCH_EXTENSION_NAME, PrivateUse1, ops) {
  ops.impl("silu_and_mul", &silu_and_mul);
  ops.impl("gelu_and_mul", &gelu_and_mul);
  ops.impl("gelu_tanh_and_mul", &gelu_tanh_and_mul);
  ops.impl("silu", &silu);
  ops.impl("gelu", &gelu);
  ops.impl("gelu_tanh", &gelu_tanh);
  ops.impl("gelu_fast", &gelu_fast);
  ops.impl("gelu_quick", &gelu_quick);
}
#endif

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
