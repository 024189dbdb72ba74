#pragma once

#include <torch/torch.h>

// Header-only helper shared by kernels: the header-only [kernel.common] table lists it.
inline torch::Tensor scaled(torch::Tensor const &input, double factor) { return input * factor; }
