// out = x * factor for contiguous float32 tensors, using only the stable tensor API.
#include <cstdint>

#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/util/Exception.h>

void scale(torch::stable::Tensor out, torch::stable::Tensor x, double factor) {
  STD_TORCH_CHECK(x.scalar_type() == torch::headeronly::ScalarType::Float, "scale: x must be float32");
  STD_TORCH_CHECK(out.scalar_type() == torch::headeronly::ScalarType::Float, "scale: out must be float32");
  STD_TORCH_CHECK(x.is_contiguous() && out.is_contiguous(), "scale: tensors must be contiguous");
  STD_TORCH_CHECK(x.numel() == out.numel(), "scale: out and x differ in size");
  const float* src = static_cast<const float*>(x.data_ptr());
  float* dst = static_cast<float*>(out.data_ptr());
  const float f = static_cast<float>(factor);
  for (int64_t i = 0; i < x.numel(); ++i) dst[i] = src[i] * f;
}
