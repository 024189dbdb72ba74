// kb_twin runtime: the closed parts of the Ascend C CPU build that the
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
#include "kernel_operator.h"

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
