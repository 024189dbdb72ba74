// Plain C++ CPU kernels, written the way Hugging Face's kernel-builder docs show them.
#include <torch/torch.h>

#include <cstdint>

namespace {

void check_args(torch::Tensor const &out, torch::Tensor const &input, char const *op) {
  TORCH_CHECK(input.device().is_cpu(), op, ": input must be a CPU tensor");
  TORCH_CHECK(out.device().is_cpu(), op, ": out must be a CPU tensor");
  TORCH_CHECK(out.scalar_type() == input.scalar_type(), op, ": out and input must have the same dtype");
  TORCH_CHECK(out.sizes() == input.sizes(), op, ": out and input must have the same shape");
}

template <typename scalar_t, typename F>
void elementwise(torch::Tensor &out, torch::Tensor const &input, F f) {
  torch::Tensor in = input.contiguous();
  torch::Tensor dst = out.is_contiguous() ? out : torch::empty_like(in);
  scalar_t const *src_ptr = in.data_ptr<scalar_t>();
  scalar_t *dst_ptr = dst.data_ptr<scalar_t>();
  int64_t const n = in.numel();
  for (int64_t i = 0; i < n; ++i) {
    dst_ptr[i] = f(src_ptr[i]);
  }
  if (!dst.is_same(out)) {
    out.copy_(dst);
  }
}

}  // namespace

void relu(torch::Tensor &out, torch::Tensor const &input) {
  check_args(out, input, "relu");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "relu_cpu", [&] {
    elementwise<scalar_t>(out, input, [](scalar_t x) {
      // NaN stays NaN, like torch.relu.
      return (x > scalar_t(0) || x != x) ? x : scalar_t(0);
    });
  });
}

void leaky_relu(torch::Tensor &out, torch::Tensor const &input, double negative_slope) {
  check_args(out, input, "leaky_relu");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "leaky_relu_cpu", [&] {
    scalar_t const slope = static_cast<scalar_t>(negative_slope);
    elementwise<scalar_t>(out, input, [slope](scalar_t x) { return x > scalar_t(0) ? x : x * slope; });
  });
}
