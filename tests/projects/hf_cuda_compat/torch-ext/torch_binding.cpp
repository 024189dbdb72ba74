#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("scale_lambda(Tensor! out, Tensor x, float factor) -> ()");
  ops.impl("scale_lambda", torch::kCUDA, &scale_lambda);
  ops.def("axpb(Tensor! out, Tensor x, float a) -> ()");
  ops.impl("axpb", torch::kCUDA, &axpb);
  ops.def("fp8_round_trip(Tensor! out, Tensor x) -> ()");
  ops.impl("fp8_round_trip", torch::kCUDA, &fp8_round_trip);
  ops.def("build_facts() -> int", &build_facts);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
