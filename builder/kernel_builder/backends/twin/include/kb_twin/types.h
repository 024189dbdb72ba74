// kb_twin: hardware enums and types that the Ascend C headers expect from the
// closed stub_fun.h. Unscoped enums: the headers use both `PIPE_V` and
// `QuantMode_t::NoQuant` spellings, and pass values as template arguments.
#pragma once

#include <cstdint>

enum pipe_t : uint8_t {
  PIPE_S = 0, PIPE_V, PIPE_M, PIPE_MTE1, PIPE_MTE2, PIPE_MTE3, PIPE_ALL, PIPE_MTE4, PIPE_MTE5,
  PIPE_V2, PIPE_FIX, VIRTUAL_PIPE_MTE2_L1A, VIRTUAL_PIPE_MTE2_L1B, PIPE_MTE, KB_PIPE_COUNT
};

enum event_t : uint8_t {
  EVENT_ID0 = 0, EVENT_ID1, EVENT_ID2, EVENT_ID3, EVENT_ID4, EVENT_ID5, EVENT_ID6, EVENT_ID7
};

enum mem_t : uint8_t { L1 = 0, L0A, L0B, L0C, UB, BT, FB, GM, MEM_ADDR };

enum mem_dsb_t : uint8_t { DSB_ALL = 0, DSB_DDR, DSB_UB, DSB_SEQ };

enum pad_t : uint8_t {
  PAD_NONE = 0, PAD_MODE1, PAD_MODE2, PAD_MODE3, PAD_MODE4, PAD_MODE5, PAD_MODE6, PAD_MODE7, PAD_MODE8
};

enum QuantMode_t : uint8_t {
  NoQuant = 0, F322F16, F322BF16, DEQF16, VDEQF16, QF322B8_PRE, VQF322B8_PRE, REQ8, VREQ8, REQ4,
  VREQ4, DEQS16, VDEQS16, QF162B8_PRE, VQF162B8_PRE, QF162S4_PRE, VQF162S4_PRE, QF162S16_PRE,
  VQF162S16_PRE, QF322F16_PRE, VQF322F16_PRE, QF322BF16_PRE, VQF322BF16_PRE, QS322BF16_PRE,
  VQS322BF16_PRE, QF322F32_PRE, VQF322F32_PRE, QF322FP8_PRE, VQF322FP8_PRE, QF322HIF8_PRE,
  VQF322HIF8_PRE, QF322HIF8_PRE_HYBRID, VQF322HIF8_PRE_HYBRID
};

enum atomic_type_t : uint8_t {
  ATOMIC_NONE = 0, ATOMIC_F32, ATOMIC_F16, ATOMIC_S16, ATOMIC_S32, ATOMIC_S8, ATOMIC_BF16
};
enum atomic_op_t : uint8_t { ATOMIC_SUM = 0 };

enum class cache_line_t : uint8_t { SINGLE_CACHE_LINE = 0, ENTIRE_DATA_CACHE };
enum class dcci_dst_t : uint8_t { CACHELINE_ALL = 0, CACHELINE_UB, CACHELINE_OUT, CACHELINE_ATOMIC };
enum class Order_t : uint8_t { VALUE_INDEX = 0, INDEX_VALUE, ONLY_VALUE, ONLY_INDEX };

// Address-register names and halves used by the vnchwconv/transpose forms.
enum ub_addr8_t : uint8_t { VA0 = 0, VA1, VA2, VA3, VA4, VA5, VA6, VA7 };
enum vpart_t : uint8_t { L128 = 0, H128 };
// Load-direction mode of the cube load intrinsics.
enum addr_cal_mode_t : uint8_t { inc = 0, dec };

// m200 (dav_m200): conv/relu modes of the cube<->UB copies, and cube sizes.
enum ConvRelu_t : uint8_t {
  CRMODE_NONE = 0, CRMODE_F32toF16_NONE, CRMODE_F32toF16_RELU, CRMODE_S32toF16_NONE,
  CRMODE_F16toF32_NONE, CRMODE_NONE_RELU, CRMODE_F16_MUL, CRMODE_S32toF16_DEQSCALE_SPR,
  CRMODE_DEQSCALE_VDEQ8, CRMODE_DEQSCALE_DEQ8, CRMODE_DEQSCALE_VDEQ16, CRMODE_DEQSCALE_DEQ16,
  CRMODE_DEQSCALE_VDEQS16, CRMODE_DEQSCALE_DEQS16
};
enum csize_t : uint8_t { CSIZE0 = 0, CSIZE1 };
