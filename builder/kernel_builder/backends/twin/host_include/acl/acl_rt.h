// kernel-builder's CPU twin (`build --cann-twin`): the ACL runtime names an Ascend C torch binding uses,
// for a build whose kernels run on the CPU. Written for the twin; not CANN's header. A launch is a plain
// call (aclrtlaunch_<kernel>, generated per build, runs the kernel's blocks in order), so a stream is
// only a token that is passed along.
#pragma once

#include <cstdint>

typedef void* aclrtStream;
typedef int aclError;

#ifndef ACL_SUCCESS
#define ACL_SUCCESS 0
#endif

// The SoC the twin was built for (--soc), as CANN's runtime names the NPU it runs on.
extern "C" const char* aclrtGetSocName();

// Launches are synchronous in the twin: there is never anything to wait for.
inline aclError aclrtSynchronizeStream(aclrtStream) { return ACL_SUCCESS; }
