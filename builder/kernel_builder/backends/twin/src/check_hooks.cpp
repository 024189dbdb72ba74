// kb_twin runtime: the parameter-check entry points of the Ascend C CPU build
// that the kernels in this repository reach. Huawei's versions run the closed
// checker framework (model_factory_mask.h); the twin accepts the parameters
// here and enforces its own rules at the intrinsic level instead (UB range and
// 32-byte alignment in src/dma.cpp and src/vec.cpp). Add an entry point here
// when the linker reports a new AscendC::check::CheckFunc*Impl.
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
