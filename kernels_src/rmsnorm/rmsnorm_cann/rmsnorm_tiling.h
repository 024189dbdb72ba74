// RMSNorm on Ascend NPUs: the launch geometry shared by the host launcher
// (rmsnorm_npu.h, plain C++) and the Ascend C kernel (rmsnorm_kernel.cpp).
//
// Plain integer arithmetic only, no includes beyond <cstdint>-level types: the
// same header is compiled by the host compiler and by CANN's Ascend C
// compiler. NEVER COMPILED BY CANN YET (see README, "Ascend NPU").
#pragma once

#include <stdint.h>

namespace kb_rmsnorm_npu {

// Unified Buffer (on-chip vector memory) per vector core, in bytes, and what we
// leave unused for the runtime and alignment slack.
constexpr uint32_t kUbBytesC220 = 192 * 1024;  // Atlas A2/A3 (Ascend910B*, 910_93xx)
constexpr uint32_t kUbBytesM200 = 256 * 1024;  // Atlas 300I/V Pro (Ascend310P*)
constexpr uint32_t kUbReserve = 8 * 1024;
// Vector DMA and vector instructions work on 32-byte blocks.
constexpr uint32_t kBlockBytes = 32;
// Launch at most this many blocks (one row range each); extra blocks queue.
constexpr uint32_t kMaxBlocksC220 = 48;
constexpr uint32_t kMaxBlocksM200 = 8;

constexpr uint32_t align_up(uint32_t n, uint32_t to) { return (n + to - 1) / to * to; }

// Elements of one row as laid out in the Unified Buffer: rounded up to a
// 32-byte block of the storage dtype (16 halves or 8 floats; a multiple of 16
// is also a whole number of float32 blocks).
constexpr uint32_t aligned_cols(uint32_t cols, uint32_t elem_bytes) {
  return align_up(cols, kBlockBytes / elem_bytes);
}

// Float32 scratch ReduceSum needs for `n` elements: one partial sum per
// 256-byte repeat (64 floats), rounded up to a block, plus one block of slack.
constexpr uint32_t reduce_work_floats(uint32_t n) {
  return align_up((n + 63) / 64, kBlockBytes / 4) + kBlockBytes / 4;
}

// Unified Buffer bytes one core needs for rows of `cols` elements of
// `elem_bytes` each: storage-dtype queues (x, out; residual, residual_out when
// fused), float32 buffers (weight, x, x^2), the reduction scratch and the
// 8-float scalar buffers (sum, one).
constexpr uint32_t ub_bytes_needed(uint32_t cols, uint32_t elem_bytes, bool fused) {
  const uint32_t ca = aligned_cols(cols, elem_bytes);
  const uint32_t io = (fused ? 4u : 2u) * ca * elem_bytes;
  const uint32_t fp = 3u * ca * 4u;
  return io + fp + reduce_work_floats(ca) * 4u + 2u * kBlockBytes;
}

}  // namespace kb_rmsnorm_npu
