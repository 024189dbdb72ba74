// kb_twin runtime: the parameter-check entry points of the Ascend C CPU build
// that the kernels in this repository reach. Huawei's versions run the closed
// checker framework (model_factory_mask.h); the twin accepts the parameters
// here and enforces its own rules at the intrinsic level instead (UB range and
// 32-byte alignment in src/dma.cpp and src/vec.cpp). Add an entry point here
// when the linker reports a new AscendC::check::CheckFunc*Impl.
//
// The second half is the other closed piece the API references (see below).
// Both live in one translation unit because each needs kernel_operator.h,
// the most expensive header of a twin build to compile.
#include "kernel_operator.h"

namespace AscendC {
namespace check {

// Every hook accepts: returns true ("parameters valid").
#define KB_TWIN_ACCEPT(fn, Params)                          \
  bool fn(Params& chkParams, const char* intriName) {       \
    (void)chkParams;                                        \
    (void)intriName;                                        \
    return true;                                            \
  }

KB_TWIN_ACCEPT(CheckFuncDataCopyImpl, DataCopyApiParams)
KB_TWIN_ACCEPT(CheckFuncDataCopyPadImpl, DataCopyPadApiParams)
KB_TWIN_ACCEPT(CheckFunDupImpl, VecDupApiParams)
KB_TWIN_ACCEPT(CheckFunReduceImpl, VecReduceApiParams)
KB_TWIN_ACCEPT(CheckFunReduceImplMode2, VecReduceApiParams)
KB_TWIN_ACCEPT(CheckFunVecBinaryScalarImpl, VecBinaryScalarApiParams)
KB_TWIN_ACCEPT(CheckFuncVecBinaryImpl, VecBinaryApiParams)

}  // namespace check
}  // namespace AscendC

// The closed parts of the Ascend C CPU build that the
// devkit's data-copy paths reference on m200 (dav_m200) and in atomic mode.
//
// ProcessLock: Huawei's CPU twin forks one process per block and serialises
// atomic GM writes with a process-shared rwlock. kb_twin runs every block in
// one thread, one after another (see src/runtime.cpp), so no two writers can
// ever overlap: the lock is a no-op that only keeps the API's calls linking.
//
// g_isAtomic / g_atomicType: read by DataCopy (UB -> GM) to decide whether the
// copy accumulates into GM. Set by the closed set_atomic_* model; kb_twin's
// set_atomic_* intrinsics abort as unimplemented (intrinsics_unimpl.h), so
// atomic mode is never on and these keep their reset values.
namespace AscendC {

bool g_isAtomic = false;
AtomicType g_atomicType = SUM;

ProcessLock* ProcessLock::processLock = nullptr;

ProcessLock::ProcessLock() = default;
ProcessLock::~ProcessLock() = default;

ProcessLock* ProcessLock::CreateLock() {
  static ProcessLock single;  // one process, one lock, never freed
  return &single;
}

void ProcessLock::FreeLock() { processLock = nullptr; }
void ProcessLock::UnInit() {}
int ProcessLock::Read() { return 0; }
int ProcessLock::Write() { return 0; }
int ProcessLock::Unlock() { return 0; }

}  // namespace AscendC
