// out = input * factor, on the CPU.
#include <torch/torch.h>

void scale(torch::Tensor &out, torch::Tensor const &input, double factor) {
  TORCH_CHECK(input.device().is_cpu() && out.device().is_cpu(), "scale: CPU tensors only");
  TORCH_CHECK(out.sizes() == input.sizes(), "scale: out and input must have the same shape");
  out.copy_(input * factor);
}
