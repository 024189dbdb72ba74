// Activations on Ascend NPUs: the launch geometry shared by the host launcher
// (activation_npu.h, plain C++) and the Ascend C kernel (activation_kernel.cpp).
//
// Plain integer arithmetic only, no includes beyond <stdint.h>: the same
// header is compiled by the host compiler and by CANN's Ascend C compiler.
// NEVER COMPILED BY CANN YET (see README, "Ascend NPU"); checked on the CPU
// twin only.
#pragma once

#include <stdint.h>

namespace kb_activation_npu {

// Unified Buffer (on-chip vector memory) per vector core, in bytes, and what we
// leave unused for the runtime and alignment slack.
constexpr uint32_t kUbBytesC220 = 192 * 1024;  // Atlas A2/A3 (Ascend910B*, 910_93xx)
constexpr uint32_t kUbBytesM200 = 256 * 1024;  // Atlas 300I/V Pro (Ascend310P*)
constexpr uint32_t kUbReserve = 8 * 1024;
// Vector DMA and vector instructions work on 32-byte blocks.
constexpr uint32_t kBlockBytes = 32;
// Launch at most this many blocks (one range of tiles each); extra blocks queue.
constexpr uint32_t kMaxBlocksC220 = 48;
constexpr uint32_t kMaxBlocksM200 = 8;

// A row is processed in tiles of at most kTileCols elements, so any hidden
// size works. A multiple of 64 (one 256-byte float32 repeat) and of every
// dtype's 32-byte block, so only a row's last tile can be partial.
constexpr uint32_t kTileCols = 4096;
// Input and output queues are double-buffered: DMA of tile i+1 overlaps the
// vector math of tile i.
constexpr uint32_t kQueueDepth = 2;

constexpr uint32_t align_up(uint32_t n, uint32_t to) { return (n + to - 1) / to * to; }

// Elements of one row tile as laid out in the Unified Buffer: rounded up to a
// 32-byte block of the storage dtype (16 halves or 8 floats; a multiple of 16
// is also a whole number of float32 blocks).
constexpr uint32_t tile_cols(uint32_t cols, uint32_t elem_bytes) {
  return cols < kTileCols ? align_up(cols, kBlockBytes / elem_bytes) : kTileCols;
}

// Tiles per row of `cols` elements.
constexpr uint32_t tiles_per_row(uint32_t cols) { return (cols + kTileCols - 1) / kTileCols; }

// float32 work buffers: the activation input, three temporaries (gelu's erfc
// needs them all) and, for the gated (*_and_mul) ops, the multiplier.
constexpr uint32_t float_buffers(bool gated) { return gated ? 5u : 4u; }

// Unified Buffer bytes one core needs: storage-dtype queues (the input, its
// multiplier half when gated, the output), each kQueueDepth deep, plus the
// float32 work buffers.
constexpr uint32_t ub_bytes_needed(uint32_t cols, uint32_t elem_bytes, bool gated) {
  const uint32_t tc = tile_cols(cols, elem_bytes);
  const uint32_t io = kQueueDepth * (gated ? 3u : 2u) * tc * elem_bytes;
  return io + float_buffers(gated) * tc * 4u;
}

// The largest tile must fit both generations (the host needs no UB check).
static_assert(ub_bytes_needed(kTileCols, 4, true) <= kUbBytesC220 - kUbReserve,
              "activation tile does not fit the c220 Unified Buffer");
static_assert(kUbBytesC220 <= kUbBytesM200, "m200 has the larger Unified Buffer");

}  // namespace kb_activation_npu
