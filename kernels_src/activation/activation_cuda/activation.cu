// CUDA implementation of the activation kernels.
//
// Memory-bound elementwise kernels: every thread moves up to 16 bytes per
// load/store and issues all loads of a step (kUnroll packs, twice that when
// gated) before any math; one tile per block (no persistent grid: the
// hardware block scheduler balances the tail). The vector width is chosen at
// launch from the alignment of the pointers, row strides and row length (16,
// 8, 4 bytes, or one element), so any shape and any (element-aligned) pointer works; fully contiguous unary
// ops run as one flat array with a scalar tail (one pack per thread), and gated ops whose rows take
// full 16-byte packs as one flat range of output packs (act_gated_flat_kernel). Math is done in float32;
// for 16-bit results with single-instruction ex2/rcp and an erf-free GELU
// (the IEEE expf/division/erff forms made the unary 16-bit kernels
// issue-bound: see activate()).
#include <ATen/ATen.h>
// c10/cuda/CUDAStream.h gives the same current stream as
// at::cuda::getCurrentCUDAStream() without ATen/cuda/CUDAContext.h, which
// needs the cuBLAS/cuSPARSE headers on the include path.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#if defined(__GNUC__) || defined(__clang__)
#define KB_ACT_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_ACT_HIDDEN
#endif

namespace kb_activation {

// Must match torch-ext/torch_binding.h.
enum class Activation : int {
  kSilu = 0,
  kGelu = 1,
  kGeluTanh = 2,
  kGeluFast = 3,
  kGeluQuick = 4,
};

namespace {

// N elements of T moved as one aligned load/store.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// float -> T, rounding to nearest even (for bfloat16 the hardware cvt; c10's
// constructor rounds in software).
template <typename T>
__device__ __forceinline__ T to_storage(float v) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return c10::BFloat16(__float2bfloat16_rn(v));
  } else {
    return static_cast<T>(v);
  }
}

// A pack held in registers as raw 32-bit words (two 16-bit elements to a
// word) whenever it is at least 4 bytes, converted to float only at the use.
// As a `c10::BFloat16 v[8]` array the compiler split every loaded bfloat16
// pair right after the load (a PRMT per pair into a second register), so the
// bf16 gated kernels took 57 (silu) / 64 (gelu) registers against 40 / 46 for
// the identical fp16 ones. Measured with Nsight Compute on an H200
// (silu_and_mul 8192x14336): 4 instead of 6 blocks of 224 threads per SM,
// 25 instead of 39 active warps, DRAM throughput 66 % instead of 87 % of
// peak, 217 us against 165 us for fp16 with the same bytes; the extra
// instructions were only ~7 %. The stores were also split (4 x 32-bit STG
// per 16-byte pack, in fp16 too); here they are one 16-byte STG.
template <typename T, int N, bool kRaw = (sizeof(T) * N >= 4)>
struct Vec;

template <typename T, int N>
struct Vec<T, N, true> {
  static constexpr int kW = static_cast<int>(sizeof(T)) * N / 4;
  struct alignas(sizeof(T) * N) Words {
    uint32_t w[kW];
  };
  Words p;

  // Explicit vector accesses: a plain struct copy (or even a uint4 store) was
  // split by the compiler into 4 x 32-bit STG in the rows kernel, so the
  // stores are written in PTX (a plain weak st.global.v4/v2, as CUTLASS does).
  __device__ __forceinline__ void load(const T* ptr) {
    if constexpr (kW == 4) {
      const uint4 v = *reinterpret_cast<const uint4*>(ptr);
      p.w[0] = v.x, p.w[1] = v.y, p.w[2] = v.z, p.w[3] = v.w;
    } else if constexpr (kW == 2) {
      const uint2 v = *reinterpret_cast<const uint2*>(ptr);
      p.w[0] = v.x, p.w[1] = v.y;
    } else {
      p = *reinterpret_cast<const Words*>(ptr);
    }
  }
  __device__ __forceinline__ void store(T* ptr) const {
    if constexpr (kW == 4) {
      asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(ptr), "r"(p.w[0]),
                   "r"(p.w[1]), "r"(p.w[2]), "r"(p.w[3])
                   : "memory");
    } else if constexpr (kW == 2) {
      asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(ptr), "r"(p.w[0]), "r"(p.w[1])
                   : "memory");
    } else {
      *reinterpret_cast<Words*>(ptr) = p;
    }
  }
  // 16-byte load/store under a predicate, without a branch (as Triton's
  // masked accesses): the pointer's constant-bank load and the address
  // arithmetic no longer wait behind the bounds check, and the math runs on
  // zeros in the masked-off lanes.
  __device__ __forceinline__ void load_if(const T* ptr, bool pred) {
    static_assert(kW == 4, "load_if: 16-byte packs only");
    p.w[0] = p.w[1] = p.w[2] = p.w[3] = 0u;
    asm volatile(
        "{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %5, 0;\n\t"
        "@p ld.global.nc.v4.b32 {%0, %1, %2, %3}, [%4];\n\t}"
        : "+r"(p.w[0]), "+r"(p.w[1]), "+r"(p.w[2]), "+r"(p.w[3])
        : "l"(ptr), "r"(static_cast<int>(pred)));
  }
  __device__ __forceinline__ void store_if(T* ptr, bool pred) const {
    static_assert(kW == 4, "store_if: 16-byte packs only");
    asm volatile(
        "{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %5, 0;\n\t"
        "@p st.global.v4.b32 [%0], {%1, %2, %3, %4};\n\t}" ::"l"(ptr),
        "r"(p.w[0]), "r"(p.w[1]), "r"(p.w[2]), "r"(p.w[3]), "r"(static_cast<int>(pred))
        : "memory");
  }
  // Element pair k (elements 2k, 2k+1; float: element k alone in .x).
  __device__ __forceinline__ float2 get2(int k) const {
    const uint32_t u = p.w[k];
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
    } else if constexpr (std::is_same_v<T, c10::Half>) {
      __half2 h;
      memcpy(&h, &u, sizeof(h));
      return __half22float2(h);
    } else {
      return make_float2(__uint_as_float(u), 0.0f);
    }
  }
  __device__ __forceinline__ void set2(int k, float lo, float hi) {
    uint32_t u;
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
      memcpy(&u, &h, sizeof(u));
    } else if constexpr (std::is_same_v<T, c10::Half>) {
      const __half2 h = __floats2half2_rn(lo, hi);
      memcpy(&u, &h, sizeof(u));
    } else {
      u = __float_as_uint(lo);
    }
    p.w[k] = u;
  }
};

// Packs under 4 bytes (one 16-bit element): element by element.
template <typename T, int N>
struct Vec<T, N, false> {
  Pack<T, N> p;
  __device__ __forceinline__ void load(const T* ptr) {
    p = *reinterpret_cast<const Pack<T, N>*>(ptr);
  }
  __device__ __forceinline__ void store(T* ptr) const {
    *reinterpret_cast<Pack<T, N>*>(ptr) = p;
  }
};

// out = f(elements of a) (and of b), pair by pair; f(float x, float g) -> float.
template <typename T, int N, typename F>
__device__ __forceinline__ void map_vec(Vec<T, N>& out, const Vec<T, N>& a,
                                        const Vec<T, N>& b, F f) {
  if constexpr (sizeof(T) * N >= 4) {
    if constexpr (std::is_same_v<T, float>) {
#pragma unroll
      for (int k = 0; k < N; ++k) {
        out.set2(k, f(a.get2(k).x, b.get2(k).x), 0.0f);
      }
    } else {
#pragma unroll
      for (int k = 0; k < N / 2; ++k) {
        const float2 x = a.get2(k);
        const float2 g = b.get2(k);
        out.set2(k, f(x.x, g.x), f(x.y, g.y));
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      out.p.v[j] = to_storage<T>(
          f(static_cast<float>(a.p.v[j]), static_cast<float>(b.p.v[j])));
    }
  }
}

// Fast float32 building blocks for 16-bit results (one MUFU instruction each;
// relative error ~1e-7, far below a float16/bfloat16 ulp). ex2(-inf) = 0,
// ex2(+inf) = +inf, rcp(+inf) = 0, and NaN stays NaN.
__device__ __forceinline__ float ex2_approx(float v) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  return r;
}
__device__ __forceinline__ float rcp_approx(float v) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  return r;
}

// x * sigmoid(y) for y = -e * ln 2, i.e. x / (1 + 2^e), e = -y * log2(e)
// (callers fold log2(e) into their constants). 5 instructions: the IEEE
// expf + division took ~20 per element (FCHK slow-path branch included),
// which made the unary 16-bit kernels issue-bound (Nsight Compute, H200,
// bf16 silu 8192 x 14336: 76 % issue-active, XU pipe 74 %, 121 us; now
// 33 % issue-active, 112 us, the speed of the same kernel without math).
__device__ __forceinline__ float x_sigmoid_fast(float x, float e) {
  return x * rcp_approx(1.0f + ex2_approx(e));
}

// Exact GELU x * Phi(x) for 16-bit results without erff: Phi's tail
// Q(t) = Phi(-t) = erfc(t / sqrt 2) / 2 as 2^P(t), P a degree-7 minimax fit
// of log2 Q on [0, 6] (max error 1.1e-5 in log2: relative error <= 8e-6 of
// Q, so <= 5e-6 of the result, i.e. well under a bfloat16 or float16 ulp).
// Phi(x) = Q(|x|) for x < 0, 1 - Q(x) otherwise; below x = -6 the result
// (|x Phi(x)| < 6e-9) is 0, as torch's 16-bit gelu gives below ~-5.5.
// ~17 instructions per element against ~28 for erff (a 7-coefficient
// polynomial whose coefficients are selected per element, plus ex2), which
// left the bf16 unary gelu compute-bound (H200, 8192 x 14336: 151 us, ALU
// pipe 68 %, 113 M warp instructions; now 114 us, 70 M). NaN -> NaN
// (fminf(NaN, 6) = 6, then NaN * Phi), +inf -> +inf, -inf -> -inf * 0 = NaN,
// as torch.
__device__ __forceinline__ float gelu_erf_fast(float x) {
  constexpr float kMax = 6.0f;
  const float t = fminf(fabsf(x), kMax);
  float p = -1.834824161051074e-06f;
  p = fmaf(p, t, 6.159855547593907e-05f);
  p = fmaf(p, t, -0.0009305269340984523f);
  p = fmaf(p, t, 0.008507899008691311f);
  p = fmaf(p, t, -0.05396008491516113f);
  p = fmaf(p, t, -0.4584643840789795f);
  p = fmaf(p, t, -1.1512510776519775f);
  p = fmaf(p, t, -0.9999952912330627f);
  const float q = ex2_approx(p);
  float phi = x < 0.0f ? q : 1.0f - q;
  phi = x < -kMax ? 0.0f : phi;
  return x * phi;
}

constexpr float kLog2e = 1.4426950408889634f;

// T is the storage type: float32 results keep the accurate (and slower)
// IEEE math; 16-bit results take the fast forms above (results within
// ~5e-6 relative of the exact value before rounding to T).
template <Activation A, typename T>
__device__ __forceinline__ float activate(float x) {
  constexpr bool kFast = !std::is_same_v<T, float>;
  if constexpr (A == Activation::kSilu) {
    if constexpr (kFast) {
      return x_sigmoid_fast(x, -kLog2e * x);
    } else {
      return x / (1.0f + expf(-x));
    }
  } else if constexpr (A == Activation::kGelu) {
    if constexpr (kFast) {
      return gelu_erf_fast(x);
    } else {
      // torch's (and torch.compile's) form. erfc(-x / sqrt 2) avoids the
      // cancellation of 1 + erff for negative x (x = -4: 3e-4 relative
      // error, x = -5: 4e-2; under 6e-8 absolute) but made the kernel
      // compute-bound (H200, 8192 x 14336: 263.4 us against 225.9 us, eager
      // torch 224.8); using it only below x = -3 cost 17 % more than erfcf
      // everywhere once 16 % of the inputs were there (warps ran both).
      // The CPU kernel keeps erfc.
      return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
  } else if constexpr (A == Activation::kGeluTanh) {
    // 0.5 x (1 + tanh(z)) == x / (1 + exp(-2 z)): same value, no cancellation
    // for negative x, and cheaper than tanh.
    if constexpr (kFast) {
      constexpr float a = -2.0f * kLog2e * 0.79788456080286536f;
      const float x2 = x * x;
      return x_sigmoid_fast(x, x * fmaf(a * 0.044715f, x2, a));
    } else {
      const float z = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return x / (1.0f + expf(-2.0f * z));
    }
  } else if constexpr (A == Activation::kGeluFast) {
    if constexpr (kFast) {
      constexpr float a = -2.0f * kLog2e * 0.7978845608f;
      const float x2 = x * x;
      return x_sigmoid_fast(x, x * fmaf(a * 0.044715f, x2, a));
    } else {
      const float z = 0.7978845608f * x * (1.0f + 0.044715f * x * x);
      return x / (1.0f + expf(-2.0f * z));
    }
  } else {
    if constexpr (kFast) {
      return x_sigmoid_fast(x, (-1.702f * kLog2e) * x);
    } else {
      return x / (1.0f + expf(-1.702f * x));
    }
  }
}

// Packs each thread moves per step: all of a step's loads are issued before
// any math or store, so every thread has U (gated: 2U) independent 16-byte
// loads in flight (one load at a time left the bf16 gelu_and_mul ~22% under
// the copy bandwidth on an H100).
constexpr int kUnroll = 2;
// act_flat_kernel (now only for unaligned pointers or 2^31 packs and more;
// act_flat32_kernel takes one pack per thread for every op): packs per
// thread, measured with 256-thread blocks. One 16-byte pack per thread moves memory
// fastest (a plain copy kernel on the H200: 97.3 % of the copy bandwidth at
// 470 MB moved with 1 pack, 94.3 % with 2, 93 % with 4; silu bf16 8192 x
// 14336 116.8 -> 113.7 us, gelu_quick the same, fp32 silu 230.1 -> 224.8
// us). The GELUs with longer math need the second independent pack per
// thread: with one, bf16 8192 x 14336 took 126.9 us instead of 115.8 (erf)
// and 122.6 instead of 116.9 (tanh and fast forms).
template <Activation A>
constexpr int flat_unroll() {
  return A == Activation::kSilu || A == Activation::kGeluQuick ? 1 : 2;
}
constexpr int kBlockThreads = 256;
// At least 6 blocks per SM: caps the kernels at 40 registers (no spills),
// so 6 blocks of 224 or 256 threads fit an SM (gelu_and_mul needed 48).
constexpr int kMinBlocks = 6;

// Rows x packs: a tile is blockDim.y rows by a chunk of blockDim.x * U packs
// of the row. Tiles are numbered chunk-fastest (tile = row group * chunks +
// chunk), so the blocks resident at any time cover whole consecutive rows:
// with the row groups along x and the chunks along y, as before, the
// resident blocks held the same quarter of ~1000 rows 57 KB apart, and
// 8192 x 14336 bf16 silu_and_mul ran at 97.7 % of the copy bandwidth instead
// of 100.8 % (H200, 170.2 vs 165.0 us: torch.compile's 164.8). One tile per
// block; the loop only matters for grids larger than the launch limit.
// `chunks` (per row) and `tiles` come from the host: computed here with
// 64-bit divisions they cost 4 calls to the 64-bit division routine (187
// instructions before the first load, against 54 before the renumbering),
// which took the gated ops at 1-16 tokens from 1.68-1.84 to 1.97-2.13 us
// under CUDA graph replay. A single chunk (rows up to 512 packs: 4096 bf16)
// needs no division at all; otherwise one 32-bit division (the host checks
// that the tiles fit 32 bits).
template <typename T, Activation A, int N, int U, bool kGated>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocks)
    act_rows_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t rows,
                    int64_t d, int64_t in_stride, int64_t out_stride,
                    int64_t tiles, uint32_t chunks) {
  const int64_t npacks = d / N;  // launch guarantees d % N == 0
  const uint32_t chunk = blockDim.x * U;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int64_t group = tile;
    uint32_t c = 0;
    if (chunks > 1) {
      const uint32_t t = static_cast<uint32_t>(tile);
      const uint32_t g = t / chunks;
      c = t - g * chunks;
      group = g;
    }
    const int64_t row = group * blockDim.y + threadIdx.y;
    if (row >= rows) {
      continue;
    }
    const T* x = in + row * in_stride;
    T* o = out + row * out_stride;
    const int64_t c0 = static_cast<int64_t>(c) * chunk + threadIdx.x;
    Vec<T, N> a[U];
    Vec<T, N> b[kGated ? U : 1];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = c0 + static_cast<int64_t>(u) * blockDim.x;
      if (i < npacks) {
        a[u].load(x + i * N);
        if constexpr (kGated) {
          b[u].load(x + d + i * N);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = c0 + static_cast<int64_t>(u) * blockDim.x;
      if (i < npacks) {
        Vec<T, N> r;
        map_vec(r, a[u], b[kGated ? u : 0], [](float v, float g) {
          v = activate<A, T>(v);
          if constexpr (kGated) {
            v *= g;
          }
          return v;
        });
        r.store(o + i * N);
      }
    }
  }
}

// Contiguous unary op over n elements: N-element packs plus a scalar tail.
// Each block moves one tile of blockDim.x * U packs (kFlatThreads) (grid-stride only past
// the launch limit), loads first.
template <typename T, Activation A, int N, int U>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocks)
    act_flat_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t n) {
  const int64_t npacks = n / N;
  const int64_t tile = static_cast<int64_t>(blockDim.x) * U;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * tile + threadIdx.x;
       base < npacks; base += static_cast<int64_t>(gridDim.x) * tile) {
    Vec<T, N> a[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * blockDim.x;
      if (i < npacks) {
        a[u].load(in + i * N);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * blockDim.x;
      if (i < npacks) {
        Vec<T, N> r;
        map_vec(r, a[u], a[u], [](float v, float) { return activate<A, T>(v); });
        r.store(out + i * N);
      }
    }
  }
  // Tail (n % N elements), by the first block.
  if (blockIdx.x == 0) {
    for (int64_t i = npacks * N + threadIdx.x; i < n; i += blockDim.x) {
      out[i] = to_storage<T>(activate<A, T>(static_cast<float>(in[i])));
    }
  }
}

// Threads per block of the flat kernels (unary contiguous, gated): 128
// measured 0-2 % faster than 256 for the unary ops (bf16 8192 x 14336: gelu
// 114.8 -> 113.8 us, gelu_tanh 115.1 -> 112.7, gelu_fast 115.0 -> 112.6),
// never slower; two packs per thread for silu / gelu_quick lost 1-8 %.
// A compile-time constant in the kernels (not blockDim.x, which is a read of
// constant bank line c[0x0][0x0], a second line besides the parameters', on
// the path to the first load).
constexpr int kFlatThreads = 128;

// Division by a run-time divisor d < 2^31 of a numerator n < 2^31 as a
// multiply-high, an add and a shift (Granlund-Montgomery: l = ceil(log2 d),
// m = floor(2^32 (2^l - d) / d) + 1; (umulhi(n, m) + n) cannot overflow as
// umulhi(n, m) < n < 2^31). The host computes m and l once per launch.
struct FastDiv {
  uint32_t d;
  uint32_t m;
  uint32_t l;
  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return (__umulhi(n, m) + n) >> l;
  }
};

inline FastDiv make_fastdiv(uint32_t d) {
  d = d > 0 ? d : 1;  // empty launches
  uint32_t l = 0;
  while ((uint64_t{1} << l) < d) {
    ++l;
  }
  const uint64_t m = ((uint64_t{1} << 32) * ((uint64_t{1} << l) - d)) / d + 1;
  return {d, static_cast<uint32_t>(m), l};
}

// Gated op, one output pack (and its two input packs) per thread, 128
// threads a block: thread g is pack g % ppr of row g / ppr, with 32-bit
// indices and the division as a multiply-high; used whenever the row takes
// full 16-byte packs and the packs fit 31 bits. Against act_rows_kernel (2
// packs per thread, 256 threads) under CUDA graph replay on the H200, bf16
// (scripts/ab_kernels.py, outputs bitwise identical): 1 x 4096 1.70-1.77 ->
// 1.26 us, 16 x 4096 2.36-2.45 -> 2.00-2.02 us, 2048 x 4096 13.95-14.34 ->
// 13.66-13.72 us, 4096 x 8192 48.4 -> 47.9 us, 8192 x 14336 162.2 -> 161.7
// us (fp32 323.1 -> 320.9); 64- or 256-thread blocks were within 0.1 us of
// 128 at the large shapes and up to 0.08 us slower at the small ones.
// Element offsets: row * stride + (g - row * ppr) * N = g * N + row * (stride - d),
// so the host passes in_skip = in_stride - d and out_skip = out_stride - d
// (0 for a contiguous output: its address does not wait for the division).
template <typename T, Activation A, int N>
__global__ void __launch_bounds__(kFlatThreads)
    act_gated_flat_kernel(T* __restrict__ out, const T* __restrict__ in,
                          uint32_t total, FastDiv ppr, int64_t d,
                          int64_t in_skip, int64_t out_skip) {
  const uint32_t g = blockIdx.x * kFlatThreads + threadIdx.x;
  const bool ok = g < total;
  const int64_t row = ppr.div(g);
  const int64_t e = static_cast<int64_t>(g) * N;
  const T* x = in + (e + row * in_skip);
  Vec<T, N> a, b;
  a.load_if(x, ok);
  b.load_if(x + d, ok);
  Vec<T, N> r;
  map_vec(r, a, b, [](float v, float gate) { return activate<A, T>(v) * gate; });
  r.store_if(out + (e + row * out_skip), ok);
}

// Contiguous unary op, one pack per thread, 32-bit index and no loop (packs
// < 2^31; act_flat_kernel beyond), the scalar tail by block 0. Against
// act_flat_kernel (64-bit grid-stride loop; two packs per thread for the
// GELUs), under CUDA graph replay on the H200, bf16, outputs bitwise
// identical (scripts/ab_kernels.py, docs/ab_h200_run7.txt): 16 x 4096 gelu
// 1.96 -> 1.83 us, gelu_tanh 1.96 -> 1.84, silu 1.85 -> 1.83; 2048 x 4096
// gelu 9.39 -> 9.08, silu 9.04 -> 8.96; 4096 x 8192 and 8192 x 14336
// within 0.3 % (gelu 113.6 / 113.7 us). Weak ld.global loads instead of
// the .nc path changed nothing (also not for the gated kernel). The bounds
// check is a predicate on the load and the store, not a branch, and the
// index uses the block size as a constant (SASS: the pointer's load and the
// address no longer wait behind the check), in this kernel and the gated
// one: under CUDA graph replay on the H200, bf16, bitwise identical
// (docs/ab_h200_run13.txt), 16 x 4096 silu / gelu / gelu_quick 1.80 ->
// 1.74 us, silu_and_mul 1.86 -> 1.82, gelu_and_mul 1.85 -> 1.83, 1 x 4096
// 1.17 -> 1.13 (gated 1.23 -> 1.18), 2048 x 4096 ~1 % faster, 8192 x 14336
// within 0.3 %.
template <typename T, Activation A, int N>
__global__ void __launch_bounds__(kFlatThreads)
    act_flat32_kernel(T* __restrict__ out, const T* __restrict__ in,
                      uint32_t npacks, int64_t n) {
  const uint32_t i = blockIdx.x * kFlatThreads + threadIdx.x;
  const bool ok = i < npacks;
  Vec<T, N> a;
  a.load_if(in + static_cast<int64_t>(i) * N, ok);
  Vec<T, N> r;
  map_vec(r, a, a, [](float v, float) { return activate<A, T>(v); });
  r.store_if(out + static_cast<int64_t>(i) * N, ok);
  if (blockIdx.x == 0) {
    for (int64_t j = static_cast<int64_t>(npacks) * N + threadIdx.x; j < n; j += blockDim.x) {
      out[j] = to_storage<T>(activate<A, T>(static_cast<float>(in[j])));
    }
  }
}

inline bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// Largest pack (in elements, <= 16 bytes) such that every pointer is aligned
// to it and every extent/stride is a multiple of it.
template <typename T>
int pick_pack(std::initializer_list<const void*> ptrs,
              std::initializer_list<int64_t> extents) {
  for (int bytes = 16; bytes > static_cast<int>(sizeof(T)); bytes /= 2) {
    const int64_t n = bytes / static_cast<int64_t>(sizeof(T));
    bool ok = true;
    for (const void* p : ptrs) {
      ok = ok && aligned(p, bytes);
    }
    for (int64_t e : extents) {
      ok = ok && (e % n == 0);
    }
    if (ok) {
      return static_cast<int>(n);
    }
  }
  return 1;
}

constexpr int64_t kMaxGridX = 0x7fffffff;

template <typename T, Activation A, bool kGated, int N>
void launch_rows_n(T* out, const T* in, int64_t rows, int64_t d,
                   int64_t in_stride, int64_t out_stride,
                   cudaStream_t stream) {
  constexpr int U = kUnroll;
  const int64_t npacks = d / N;
  // Split the row into the fewest chunks of at most kBlockThreads * U packs,
  // evenly (8192 x 14336 bf16: 4 chunks of 224 threads, no idle lanes);
  // short rows (< 32 threads) share a block, kBlockThreads / tx rows each.
  const int64_t chunks = std::max<int64_t>(
      1, (npacks + kBlockThreads * U - 1) / (kBlockThreads * U));
  int64_t tx = (npacks + chunks * U - 1) / (chunks * U);
  if (tx >= 32) {
    tx = (tx + 31) / 32 * 32;
  } else {
    int64_t p = 1;
    while (p < tx) {
      p *= 2;
    }
    tx = p;
  }
  const int64_t ty = std::max<int64_t>(1, kBlockThreads / tx);
  // What the kernel divides by: the chunks of tx * U packs a row takes (equal
  // to `chunks` above or fewer after the rounding of tx), and its tile count.
  const int64_t kchunks = (npacks + tx * U - 1) / (tx * U);
  const int64_t tiles = (rows + ty - 1) / ty * kchunks;
  TORCH_CHECK(kchunks <= 1 || tiles <= static_cast<int64_t>(UINT32_MAX),
              "activation: ", tiles, " tiles do not fit the kernel's 32-bit tile numbering");
  const dim3 block(static_cast<unsigned>(tx), static_cast<unsigned>(ty));
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(tiles, kMaxGridX))));
  act_rows_kernel<T, A, N, U, kGated><<<grid, block, 0, stream>>>(
      out, in, rows, d, in_stride, out_stride, tiles,
      static_cast<uint32_t>(std::max<int64_t>(1, kchunks)));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, Activation A, bool kGated>
void launch_rows(T* out, const T* in, int64_t rows, int64_t d,
                 int64_t in_stride, int64_t out_stride, cudaStream_t stream) {
  // The gate half starts d elements into the row, so d must be a multiple of
  // the pack too (checked through the extents).
  const int n = pick_pack<T>({out, in}, {d, in_stride, out_stride});
  constexpr int kMax = static_cast<int>(16 / sizeof(T));
  if constexpr (kGated) {
    const int64_t ppr = d / kMax;
    const int64_t total = rows * ppr;
    if (n == kMax && total + kFlatThreads < (int64_t{1} << 31)) {
      const auto blocks = static_cast<unsigned>((total + kFlatThreads - 1) / kFlatThreads);
      act_gated_flat_kernel<T, A, kMax><<<std::max(1u, blocks), kFlatThreads, 0, stream>>>(
          out, in, static_cast<uint32_t>(total), make_fastdiv(static_cast<uint32_t>(ppr)), d,
          in_stride - d, out_stride - d);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
  }
  switch (n) {
    case kMax:
      launch_rows_n<T, A, kGated, kMax>(out, in, rows, d, in_stride,
                                        out_stride, stream);
      break;
    case kMax / 2:
      launch_rows_n<T, A, kGated, kMax / 2>(out, in, rows, d, in_stride,
                                            out_stride, stream);
      break;
    case kMax / 4:
      launch_rows_n<T, A, kGated, kMax / 4>(out, in, rows, d, in_stride,
                                            out_stride, stream);
      break;
    default:  // one element at a time (only reachable for 16-bit types)
      launch_rows_n<T, A, kGated, 1>(out, in, rows, d, in_stride, out_stride,
                                     stream);
      break;
  }
}

template <typename T, Activation A>
void launch_flat(T* out, const T* in, int64_t n, cudaStream_t stream) {
  constexpr int kPack = static_cast<int>(16 / sizeof(T));
  constexpr int U = flat_unroll<A>();
  const bool vec = aligned(out, 16) && aligned(in, 16);
  constexpr int threads = kFlatThreads;
  if (vec && n / kPack + threads < (int64_t{1} << 31)) {
    const auto np = static_cast<uint32_t>(n / kPack);
    const unsigned blocks = std::max(1u, (np + threads - 1) / threads);
    act_flat32_kernel<T, A, kPack><<<blocks, threads, 0, stream>>>(out, in, np, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  const int64_t per_block = static_cast<int64_t>(threads) * U * (vec ? kPack : 1);
  const dim3 grid(static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((n + per_block - 1) / per_block, kMaxGridX))));
  if (vec) {
    act_flat_kernel<T, A, kPack, U><<<grid, threads, 0, stream>>>(out, in, n);
  } else {
    act_flat_kernel<T, A, 1, U><<<grid, threads, 0, stream>>>(out, in, n);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename F>
void dispatch_dtype(at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kFloat:
      f(TypeTag<float>{});
      break;
    case at::kHalf:
      f(TypeTag<c10::Half>{});
      break;
    case at::kBFloat16:
      f(TypeTag<c10::BFloat16>{});
      break;
    default:
      TORCH_CHECK(false, "activation: unsupported dtype ", dtype);
  }
}

template <typename F>
void dispatch_act(Activation act, F&& f) {
  switch (act) {
    case Activation::kSilu:
      f(std::integral_constant<Activation, Activation::kSilu>{});
      break;
    case Activation::kGelu:
      f(std::integral_constant<Activation, Activation::kGelu>{});
      break;
    case Activation::kGeluTanh:
      f(std::integral_constant<Activation, Activation::kGeluTanh>{});
      break;
    case Activation::kGeluFast:
      f(std::integral_constant<Activation, Activation::kGeluFast>{});
      break;
    case Activation::kGeluQuick:
      f(std::integral_constant<Activation, Activation::kGeluQuick>{});
      break;
    default:
      TORCH_CHECK(false, "activation: unknown activation ",
                  static_cast<int>(act));
  }
}

}  // namespace

KB_ACT_HIDDEN void launch_act_and_mul(Activation act, at::Tensor& out,
                                      const at::Tensor& input, int64_t rows,
                                      int64_t d, int64_t in_stride,
                                      int64_t out_stride) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype(input.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_act(act, [&](auto a) {
      constexpr Activation kAct = decltype(a)::value;
      // Only activations used in gated form are instantiated gated.
      if constexpr (kAct == Activation::kSilu || kAct == Activation::kGelu ||
                    kAct == Activation::kGeluTanh) {
        launch_rows<T, kAct, true>(out.data_ptr<T>(),
                                   input.const_data_ptr<T>(), rows, d,
                                   in_stride, out_stride, stream);
      } else {
        TORCH_CHECK(false, "activation: no gated kernel for activation ",
                    static_cast<int>(kAct));
      }
    });
  });
}

KB_ACT_HIDDEN void launch_act(Activation act, at::Tensor& out,
                              const at::Tensor& input, int64_t rows, int64_t d,
                              int64_t in_stride, int64_t out_stride) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype(input.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_act(act, [&](auto a) {
      constexpr Activation kAct = decltype(a)::value;
      T* o = out.data_ptr<T>();
      const T* x = input.const_data_ptr<T>();
      if (rows == 1 || (in_stride == d && out_stride == d)) {
        launch_flat<T, kAct>(o, x, rows * d, stream);
      } else {
        launch_rows<T, kAct, false>(o, x, rows, d, in_stride, out_stride,
                                    stream);
      }
    });
  });
}

}  // namespace kb_activation
