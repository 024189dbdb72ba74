// Registration through the stable ABI: STABLE_TORCH_LIBRARY and boxed kernels (TORCH_BOX), no ATen.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>

#include "registration.h"

void scale(torch::stable::Tensor out, torch::stable::Tensor x, double factor);

STABLE_TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, m) {
  m.def("scale(Tensor! out, Tensor x, float factor) -> ()");
}

STABLE_TORCH_LIBRARY_IMPL_EXPAND(TORCH_EXTENSION_NAME, CPU, m) {
  m.impl("scale", TORCH_BOX(&scale));
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
