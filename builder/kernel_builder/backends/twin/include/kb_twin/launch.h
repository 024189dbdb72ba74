// kb_twin: running an Ascend C kernel's blocks on the CPU.
//
//   kb_twin::run_blocks(blocks, [&] { kb_rms_norm_f32(x, w, out, ...); });
//
// runs `body` once per block, in order 0..blocks-1, with GetBlockIdx() ==
// block and GetBlockNum() == blocks. Before each block it resets the state a
// fresh core would have: vector mask (normal mode, all lanes), pad value,
// reduction accumulator, and refills the Unified Buffer with 0xFF bytes (NaN
// in every float format) so a kernel that reads UB it never wrote gets NaNs,
// not the previous block's data. TPipe/TQue objects are the kernel's own
// locals and are rebuilt by each call of `body`.
//
// Core type: AIV (vector core, block i = vector core i) by default; pass
// CoreType::AIC for cube-only kernels (g_coreType = AIC). Mixed AIC+AIV
// kernels (cross-core sync) are not supported.
// Returns 0; a kernel that breaks a modelled rule aborts the process with a
// message naming the intrinsic (see src/dma.cpp, src/vec.cpp).
#pragma once

#include <cstdint>
#include <functional>

namespace kb_twin {

enum class CoreType : int32_t { AIC = 1, AIV = 2 };

uint32_t run_blocks(uint32_t blocks, const std::function<void()>& body,
                    CoreType core = CoreType::AIV);

}  // namespace kb_twin
