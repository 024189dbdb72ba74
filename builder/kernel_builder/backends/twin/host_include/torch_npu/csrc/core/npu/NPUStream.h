// kernel-builder's CPU twin: the part of torch_npu's stream API an Ascend C binding calls to launch a
// kernel. In the twin the "NPU" is the CPU and a launch is a synchronous call, so the current stream is
// a null token. Written for the twin; not torch_npu's header.
#pragma once

#include <c10/core/Device.h>

#include "acl/acl_rt.h"

namespace c10_npu {

class NPUStream {
 public:
  aclrtStream stream() const { return nullptr; }
  void synchronize() const {}
};

inline NPUStream getCurrentNPUStream(c10::DeviceIndex = -1) { return NPUStream(); }

}  // namespace c10_npu
