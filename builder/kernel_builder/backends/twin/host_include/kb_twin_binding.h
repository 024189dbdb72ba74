// kernel-builder's CPU twin (`build --cann-twin`): included by the generated binding wrapper before the
// project's torch binding. The binding is the one written for the NPU, unchanged: what it registers for
// and checks against the NPU device (PrivateUse1, the key torch_npu owns) is the CPU in the twin. torch's
// headers are parsed first, so the renaming below reaches only the binding's own code.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#define PrivateUse1 CPU
