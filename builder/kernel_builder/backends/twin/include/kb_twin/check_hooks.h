// kb_twin: the parameter-check / buffer-tracking hooks that the CPU-debug
// build of the Ascend C headers calls (TPipe, TQue, TBufPool bookkeeping).
// The closed npuchk library records them; the twin ignores them because its
// own checks sit in the DMA and vector intrinsics (see src/).
#pragma once
#include "kb_twin/intrinsic_macros.h"

KB_TWIN_NOOP(AscendCBufAbsAddr)
KB_TWIN_NOOP(AscendCBufAlloc)
KB_TWIN_NOOP(AscendCBufDeque)
KB_TWIN_NOOP(AscendCBufEnque)
KB_TWIN_NOOP(AscendCBufFree)
KB_TWIN_NOOP(AscendCBufGet)
KB_TWIN_NOOP(AscendCBufInit)
KB_TWIN_NOOP(AscendCQueCreate)
KB_TWIN_NOOP(AscendCRecordPoolHierarchy)
KB_TWIN_NOOP(AscendCTBufPoolInit)
KB_TWIN_NOOP(AscendCTBufPoolResetCheck)
KB_TWIN_NOOP(AscendCUpdateTbufPoolStatus)

// Cross-block synchronisation (SyncAll, IBSet/IBWait) cannot be honoured when
// blocks run one after another: refuse instead of deadlocking or lying.
KB_TWIN_UNIMPL(__sync_all_stub)
KB_TWIN_UNIMPL(__ib_set_stub)
KB_TWIN_UNIMPL(__ib_wait_stub)
