#pragma once

#include <torch/torch.h>

void relu(torch::Tensor &out, torch::Tensor const &input);

void leaky_relu(torch::Tensor &out, torch::Tensor const &input, double negative_slope);
