// kb_twin: the intrinsic declarations seen by the Ascend C headers.
#pragma once
#include "kb_twin/intrinsic_macros.h"
#include "kb_twin/check_hooks.h"
#include "kb_twin/intrinsics_impl.h"
#include "kb_twin/intrinsics_unimpl.h"

// Pipe/event synchronisation: blocks and pipes run strictly in program order
// on the CPU, so every wait is already satisfied.
KB_TWIN_NOOP(pipe_barrier)
KB_TWIN_NOOP(set_flag)
KB_TWIN_NOOP(wait_flag)
KB_TWIN_NOOP(hset_flag)
KB_TWIN_NOOP(hwait_flag)
KB_TWIN_NOOP(dsb)
KB_TWIN_NOOP(dcci)
KB_TWIN_NOOP(preload)
KB_TWIN_NOOP(dc_preload)
