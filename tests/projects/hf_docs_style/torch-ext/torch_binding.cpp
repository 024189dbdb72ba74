#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("relu(Tensor! out, Tensor input) -> ()");
  ops.impl("relu", torch::kCPU, &relu);

  ops.def("leaky_relu(Tensor! out, Tensor input, float negative_slope) -> ()");
  ops.impl("leaky_relu", torch::kCPU, &leaky_relu);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
