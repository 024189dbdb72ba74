// kb_twin runtime: the DMA (MTE) copies between Global Memory and the Unified
// Buffer. Modelled rules (a violation prints the call and aborts):
//   - every UB address must be 32-byte aligned (offset from the UB base);
//   - every byte moved to or from UB must lie inside the UB capacity
//     (TOTAL_UB_SIZE of the arch, see include/kernel_operator.h).
// GM is host memory: GM addresses are not checked (the caller owns them).
#include <cstring>

#include "state.h"

namespace kb_twin {
namespace {

constexpr uint64_t kBlk = 32;

uint64_t align32(uint64_t n) { return (n + kBlk - 1) / kBlk * kBlk; }

void need_args(const char* name, int n, int want) {
  if (n != want) unimplemented(name);  // another operand form of the intrinsic
}

}  // namespace

// (sid, nBurst, lenBurst, srcStride, dstStride), all lengths in 32-byte blocks.
void dma_gm_to_ub(const char* name, void* ub, const void* gm, const uint64_t* a, int n) {
  need_args(name, n, 5);
  const uint64_t bursts = a[1], len = a[2] * kBlk, sgap = a[3] * kBlk, dgap = a[4] * kBlk;
  check_ub_aligned(name, ub);
  for (uint64_t i = 0; i < bursts; ++i) {
    uint8_t* d = static_cast<uint8_t*>(ub) + i * (len + dgap);
    check_ub_range(name, d, len);
    std::memcpy(d, static_cast<const uint8_t*>(gm) + i * (len + sgap), len);
  }
}

void dma_ub_to_gm(const char* name, void* gm, const void* ub, const uint64_t* a, int n) {
  need_args(name, n, 5);
  const uint64_t bursts = a[1], len = a[2] * kBlk, sgap = a[3] * kBlk, dgap = a[4] * kBlk;
  check_ub_aligned(name, ub);
  for (uint64_t i = 0; i < bursts; ++i) {
    const uint8_t* s = static_cast<const uint8_t*>(ub) + i * (len + sgap);
    check_ub_range(name, s, len);
    std::memcpy(static_cast<uint8_t*>(gm) + i * (len + dgap), s, len);
  }
}

void dma_ub_to_ub(const char* name, void* dst, const void* src, const uint64_t* a, int n) {
  need_args(name, n, 5);
  const uint64_t bursts = a[1], len = a[2] * kBlk, sgap = a[3] * kBlk, dgap = a[4] * kBlk;
  check_ub_aligned(name, dst);
  check_ub_aligned(name, src);
  for (uint64_t i = 0; i < bursts; ++i) {
    const uint8_t* s = static_cast<const uint8_t*>(src) + i * (len + sgap);
    uint8_t* d = static_cast<uint8_t*>(dst) + i * (len + dgap);
    check_ub_range(name, s, len);
    check_ub_range(name, d, len);
    std::memmove(d, s, len);
  }
}

// DataCopyPad GM -> UB: (sid, nBurst, lenBurst bytes, leftPad, rightPad
// elements, srcGap bytes, dstGap blocks). Each burst lands at a 32-byte
// boundary in UB as [leftPad x pad][data][rightPad x pad], then the UB
// pointer advances to the next 32-byte boundary plus dstGap blocks. Bytes
// between the data and that boundary are left as they were.
void dma_gm_to_ub_pad(const char* name, int elem, void* ub, const void* gm, const uint64_t* a,
                      int n) {
  need_args(name, n, 7);
  const uint64_t bursts = a[1], len = a[2], lpad = a[3] * elem, rpad = a[4] * elem;
  const uint64_t sgap = a[5], dgap = a[6] * kBlk;
  const uint64_t ub_burst = align32(lpad + len + rpad);
  check_ub_aligned(name, ub);
  const uint64_t pad = core().pad_value;
  for (uint64_t i = 0; i < bursts; ++i) {
    uint8_t* d = static_cast<uint8_t*>(ub) + i * (ub_burst + dgap);
    check_ub_range(name, d, ub_burst);
    for (uint64_t k = 0; k < lpad; k += elem) std::memcpy(d + k, &pad, elem);
    std::memcpy(d + lpad, static_cast<const uint8_t*>(gm) + i * (len + sgap), len);
    for (uint64_t k = 0; k < rpad; k += elem) std::memcpy(d + lpad + len + k, &pad, elem);
  }
}

// DataCopyPad UB -> GM: (sid, nBurst, lenBurst bytes, 0, 0, srcGap blocks,
// dstGap bytes). Each UB burst starts on a 32-byte boundary; exactly lenBurst
// bytes reach GM, so odd row lengths never overwrite GM past the row.
void dma_ub_to_gm_pad(const char* name, int elem, void* gm, const void* ub, const uint64_t* a,
                      int n) {
  need_args(name, n, 7);
  (void)elem;
  const uint64_t bursts = a[1], len = a[2], sgap = a[5] * kBlk, dgap = a[6];
  if (a[3] != 0 || a[4] != 0) refuse(name, "padding on a UB->GM copy (left %llu, right %llu)",
                                     static_cast<unsigned long long>(a[3]),
                                     static_cast<unsigned long long>(a[4]));
  check_ub_aligned(name, ub);
  for (uint64_t i = 0; i < bursts; ++i) {
    const uint8_t* s = static_cast<const uint8_t*>(ub) + i * (align32(len) + sgap);
    check_ub_range(name, s, len);
    std::memcpy(static_cast<uint8_t*>(gm) + i * (len + dgap), s, len);
  }
}

}  // namespace kb_twin
