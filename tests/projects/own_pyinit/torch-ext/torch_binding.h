#pragma once

#include <torch/torch.h>

void scale(torch::Tensor &out, torch::Tensor const &input, double factor);
