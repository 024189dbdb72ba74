// kb_twin stand-in for the closed `stub_fun.h` of Ascend's CPU-debug library.
//
// Written for kernel-builder from the names the open Ascend C headers
// (asc-devkit) use; none of Huawei's closed code is reproduced. It declares the
// hardware enums/types (pipe_t, event_t, ...) and the intrinsics; their CPU
// semantics live in ../src.
#pragma once

#include <cstdint>

#include "kb_twin/types.h"
#include "kb_twin/intrinsics.h"
