// kb_twin runtime: aborts, per-block state and the block launcher.
#include <csignal>
#include <cstdarg>
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kb_twin/launch.h"
#include "state.h"

// Globals of the Ascend C CPU build, defined by the open cpudebug sources
// (asc-tools/cpudebug/src/regfwk/stub_base.cpp) and read by the API headers.
extern int64_t block_idx;
extern int64_t block_num;
extern int32_t g_coreType;
extern int32_t g_taskRation;
extern int32_t sub_block_idx;

namespace kb_twin {
namespace {
UbQuery g_ub_query = nullptr;
CoreState g_core;
}  // namespace

CoreState& core() { return g_core; }

[[noreturn]] void unimplemented(const char* name) {
  std::fprintf(stderr, "kb_twin: intrinsic '%s' is not implemented by the CPU twin (block %lld)\n",
               name, static_cast<long long>(g_core.block_idx));
  std::fflush(stderr);
  std::abort();
}

[[noreturn]] void refuse(const char* call, const char* fmt, ...) {
  std::fprintf(stderr, "kb_twin: %s refused (block %lld): ", call,
               static_cast<long long>(g_core.block_idx));
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}

bool register_ub_query(UbQuery q) {
  g_ub_query = q;
  return true;
}

int64_t current_block_idx() { return g_core.block_idx; }
int64_t current_block_num() { return g_core.block_num; }

void check_ub_range(const char* call, const void* p, uint64_t len) {
  if (g_core.ub_base == nullptr) {
    refuse(call, "no Unified Buffer registered (kernel not built with kb_twin's kernel_operator.h?)");
  }
  const uint64_t off = static_cast<uint64_t>(static_cast<const uint8_t*>(p) - g_core.ub_base);
  if (off > g_core.ub_bytes || len > g_core.ub_bytes - off) {
    refuse(call, "UB range [offset %lld, +%llu bytes) is outside the %llu-byte Unified Buffer",
           static_cast<long long>(static_cast<const uint8_t*>(p) - g_core.ub_base),
           static_cast<unsigned long long>(len), static_cast<unsigned long long>(g_core.ub_bytes));
  }
}

void check_ub_aligned(const char* call, const void* p) {
  const int64_t off = static_cast<const uint8_t*>(p) - g_core.ub_base;
  if (off % 32 != 0) {
    refuse(call, "UB address offset %lld is not 32-byte aligned", static_cast<long long>(off));
  }
}

// A fresh core: masks/registers at their reset values, UB full of 0xFF.
static void reset_core(int64_t idx, int64_t num) {
  const CoreState fresh;
  g_core = fresh;
  g_core.block_idx = idx;
  g_core.block_num = num;
  if (g_ub_query != nullptr) {
    g_ub_query(&g_core.ub_base, &g_core.ub_bytes);
    if (g_core.ub_base != nullptr) std::memset(g_core.ub_base, 0xFF, g_core.ub_bytes);
  }
}

// The API's own CPU-mode checks (ASCENDC_ASSERT, e.g. TPipe::InitBuffer past
// the UB capacity) raise SIGABRT, sometimes without a message: say which block.
// Their message goes to stdout via printf just before raise(); flush it, or a
// piped stdout loses it. raise() is synchronous in this thread, so stdio is in
// a consistent state here (this is not an asynchronous signal).
static void on_abort(int) {
  std::fflush(stdout);
  static const char msg[] = "kb_twin: SIGABRT while running a kernel block (see block index in gdb "
                            "or the message above; Ascend C API assertions abort this way)\n";
  (void)!write(2, msg, sizeof msg - 1);
  std::signal(SIGABRT, SIG_DFL);
  std::raise(SIGABRT);
}

uint32_t run_blocks(uint32_t blocks, const std::function<void()>& body, CoreType type) {
  std::signal(SIGABRT, on_abort);
  g_coreType = static_cast<int32_t>(type);
  g_taskRation = 1;  // one vector core per block: GetBlockIdx() == block_idx
  sub_block_idx = 0;
  block_num = blocks;
  for (uint32_t b = 0; b < blocks; ++b) {
    block_idx = b;
    reset_core(b, blocks);
    body();
  }
  return 0;
}

int elem_bytes(DType t) {
  switch (t) {
    case DType::S8: case DType::U8: return 1;
    case DType::F16: case DType::BF16: case DType::S16: case DType::U16: return 2;
    case DType::F32: case DType::S32: case DType::U32: return 4;
    case DType::S64: case DType::U64: return 8;
    default: return 0;
  }
}

const char* dtype_name(DType t) {
  static const char* const names[] = {"unsupported", "f16", "bf16", "f32", "s16", "s32",
                                      "u16", "u32", "s8", "u8", "s64", "u64"};
  return names[static_cast<int>(t)];
}

void set_mask_mode(bool counter) { g_core.counter_mode = counter; }
void set_mask(uint64_t hi, uint64_t lo) {
  g_core.mask_hi = hi;
  g_core.mask_lo = lo;
}
void set_pad_value(uint64_t v) { g_core.pad_value = v; }
int64_t acc_value() { return g_core.acc; }

}  // namespace kb_twin

namespace kb_twin {
int64_t ctrl_value() { return static_cast<int64_t>(g_core.ctrl); }
void set_ctrl_value(uint64_t v) { g_core.ctrl = v; }
}  // namespace kb_twin
