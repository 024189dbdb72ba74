#pragma once

#include <torch/torch.h>

void scale_lambda(torch::Tensor &out, torch::Tensor const &x, double factor);
void axpb(torch::Tensor &out, torch::Tensor const &x, double a);
void fp8_round_trip(torch::Tensor &out, torch::Tensor const &x);
int64_t build_facts();
