// CUDA implementation of RMSNorm (optionally fused with a residual add).
//
// Rows up to 4 packs per thread at 512 threads (16384 bf16 / 8192 fp32
// elements) are read once into registers: with one wave of rows (and fused
// rows that fill one to three waves), a lean kernel of a block per row and a
// thread per pack (up to 512, then 2 or 4 packs a thread); with many rows,
// rms_norm_cached_kernel with one block per row and nothing prefetched (fewer
// registers, more rows resident per SM); short rows share a block, a group of
// lanes each, reduced with shuffles; unfused rows filling one to three waves,
// a persistent, software-pipelined grid whose next row's loads are in flight
// while the current row is reduced and written. The sum of squares is
// accumulated in float32 (when fused, residual_out is written on the way).
// 16-bit rows of ~12K-16K elements are staged in shared memory; longer rows
// (and odd sizes) take a streaming kernel that re-reads the row from L1 in
// its second pass (long rows get 1024-thread blocks so that the re-read
// stays in L1). Loads and stores
// move up to 16 bytes per thread; the pack width is chosen at launch from the
// alignment of every pointer, row stride and the row length, so any hidden
// size and any element-aligned pointer works (odd sizes fall back to one
// element per access).
#include <ATen/ATen.h>
// c10/cuda/CUDAStream.h gives the same current stream as
// at::cuda::getCurrentCUDAStream() without ATen/cuda/CUDAContext.h, which
// needs the cuBLAS/cuSPARSE headers on the include path.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#if defined(__GNUC__) || defined(__clang__)
#define KB_RMS_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_RMS_HIDDEN
#endif

namespace kb_rmsnorm {

// Must match torch-ext/torch_binding.h.
struct RmsNormArgs {
  int64_t rows;
  int64_t cols;
  int64_t in_stride;
  int64_t out_stride;
  int64_t res_stride;
  int64_t res_out_stride;
  float eps;
};

namespace {

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

// A pack held as 32-bit words (two 16-bit elements to a word): c10's 16-bit
// types in a `T v[N]` array cost one register per element, twice the words
// (the register-cached kernel then spilled). Converted to float only for the
// math. Needs N * sizeof(T) >= 4.
template <typename T, int N>
struct alignas(sizeof(T) * N) Words {
  static constexpr int kW = static_cast<int>(sizeof(T)) * N / 4;
  static_assert(kW >= 1, "Words needs at least 4 bytes");
  uint32_t w[kW];
};

template <typename T, int N>
__device__ __forceinline__ Words<T, N> load_words(const T* p) {
  return *reinterpret_cast<const Words<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_words(T* p, const Words<T, N>& v) {
  *reinterpret_cast<Words<T, N>*>(p) = v;
}

template <typename T>
__device__ __forceinline__ float2 unpack2(uint32_t u) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
  } else {
    __half2 h;
    memcpy(&h, &u, sizeof(h));
    return __half22float2(h);
  }
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t u;
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    memcpy(&u, &h, sizeof(u));
  } else {
    const __half2 h = __floats2half2_rn(lo, hi);
    memcpy(&u, &h, sizeof(u));
  }
  return u;
}

template <typename T, int N>
__device__ __forceinline__ void to_float(const Words<T, N>& p, float (&f)[N]) {
  if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      f[j] = __uint_as_float(p.w[j]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < N / 2; ++k) {
      const float2 v = unpack2<T>(p.w[k]);
      f[2 * k] = v.x;
      f[2 * k + 1] = v.y;
    }
  }
}

// Rounds to T (round to nearest even, as c10's conversions).
template <typename T, int N>
__device__ __forceinline__ Words<T, N> from_float(const float (&f)[N]) {
  Words<T, N> p;
  if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      p.w[j] = __float_as_uint(f[j]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < N / 2; ++k) {
      p.w[k] = pack2<T>(f[2 * k], f[2 * k + 1]);
    }
  }
  return p;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Sum of v over the block (blockDim.x is a multiple of 32) with one
// barrier: each warp writes its partial sum, then every warp finishes the sum
// from the partials itself (the same shuffle tree in every warp, so the same
// bits everywhere). shm holds 32 floats that are not written again before the
// block's next barrier: loops alternate two halves of a 64-float array
// (block_sum_at). Against warp 0 alone finishing and broadcasting it (three
// barriers), under CUDA graph replay on the H200 (docs/ab_h200_run15.txt,
// outputs bitwise identical): 16 x 4096 bf16 2.41 -> 2.32 us, fused 2.55 ->
// 2.49; many rows within 0.3 %.
__device__ __forceinline__ float block_sum(float v, float* shm) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) {
    shm[warp] = v;
  }
  __syncthreads();
  return warp_sum(lane < nwarps ? shm[lane] : 0.0f);
}

// block_sum in a loop: iteration `iter` uses its half of shm[64].
__device__ __forceinline__ float block_sum_at(float v, float* shm, int iter) {
  return block_sum(v, shm + 32 * (iter & 1));
}

// x (+ residual) -> the value to normalize, written to residual_out when
// fused; returns it and adds its squares to ss.
template <typename T, int N, bool kFused>
__device__ __forceinline__ Pack<T, N> load_row_pack(const T* x, const T* r,
                                                    T* ro, int64_t i,
                                                    float& ss) {
  const Pack<T, N> xv = load_pack<T, N>(x + i * N);
  if constexpr (kFused) {
    const Pack<T, N> rv = load_pack<T, N>(r + i * N);
    Pack<T, N> sv;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      sv.v[j] = static_cast<T>(static_cast<float>(xv.v[j]) +
                               static_cast<float>(rv.v[j]));
      const float f = static_cast<float>(sv.v[j]);
      ss += f * f;
    }
    store_pack<T, N>(ro + i * N, sv);
    return sv;
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float f = static_cast<float>(xv.v[j]);
      ss += f * f;
    }
    return xv;
  }
}

template <typename T, int N>
__device__ __forceinline__ void store_normalized(T* o,
                                                 const T* __restrict__ weight,
                                                 const Pack<T, N>& xv,
                                                 float inv_rms, int64_t i) {
  const Pack<T, N> wv = load_pack<T, N>(weight + i * N);
  Pack<T, N> ov;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    // Round the normalized value to T before the weight multiply, as
    // transformers does (`weight * hidden.to(input_dtype)`).
    const T normed = static_cast<T>(static_cast<float>(xv.v[j]) * inv_rms);
    ov.v[j] =
        static_cast<T>(static_cast<float>(wv.v[j]) * static_cast<float>(normed));
  }
  store_pack<T, N>(o + i * N, ov);
}

// Streaming kernel for rows of any length (and one-element packs): one block
// per row (grid-stride), pass 2 re-reads the row (from L1/L2).
//
// Outputs may alias inputs (out/input, residual_out/residual): every element
// is read and then written by the same thread, in both passes.
template <typename T, int N, bool kFused>
__global__ void __launch_bounds__(1024)
    rms_norm_stream_kernel(T* out, T* res_out, const T* in, const T* res,
                           const T* __restrict__ weight, RmsNormArgs a) {
  __shared__ float shm[64];
  int iter = 0;
  const int64_t d = a.cols;
  const int64_t npacks = d / N;  // launch guarantees d % N == 0
  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const T* x = in + row * a.in_stride;
    const T* r = kFused ? res + row * a.res_stride : nullptr;
    T* ro = kFused ? res_out + row * a.res_out_stride : nullptr;
    T* o = out + row * a.out_stride;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < npacks; i += blockDim.x) {
      load_row_pack<T, N, kFused>(x, r, ro, i, ss);
    }
    ss = block_sum_at(ss, shm, iter++);
    const float inv_rms = rsqrtf(ss / static_cast<float>(d) + a.eps);
    const T* src = kFused ? ro : x;  // what pass 2 normalizes
    for (int64_t i = threadIdx.x; i < npacks; i += blockDim.x) {
      store_normalized<T, N>(o, weight, load_pack<T, N>(src + i * N), inv_rms,
                             i);
    }
  }
}

// Register-cached kernel (rows of at most kCache * blockDim.x packs). A
// block is blockDim.y rows of blockDim.x threads: kWarp (blockDim.x <= 32, a
// power of two) reduces each row with shuffles among its blockDim.x lanes,
// otherwise (blockDim.y == 1) through shared memory. Each thread holds its
// packs of the row in registers (the row is read from memory once); packs
// are kept as 32-bit words (see Words). Three ways to run it:
// - kPrefetch: a persistent grid (the blocks that fit on the device at
//   once) where a thread issues the loads of its next row before reducing
//   and writing the current one, so a block always has a row's loads in
//   flight (the H100 run of a one-row-at-a-time persistent kernel gave
//   58-74 % of the copy bandwidth at 4096 x 8192 bf16). Rows are visited in
//   steps of gridDim.x * blockDim.y, uniformly across a block (the barriers
//   and shuffles need every thread), so rows past the end are masked.
// - one pass (neither flag): a block per group of rows, the loop runs once
//   and a thread holds one row, not two (bf16 rows of 8192: 56 registers
//   instead of 72, 4 resident blocks per SM instead of 3). With many rows
//   per resident block that wins (H200, bf16, CUDA events: 4096 x 8192
//   40.2 -> 38.0 us, 8192 x 14336 129.5 -> 122.4 us, 32768 x 4096 149.3 ->
//   134.3 us, fused 4096 x 8192 76.2 -> 70.3 us); at 2048 x 4096 (1.7 rows
//   per resident block) and on the short-row path it lost 4-8 %.
// - one pass with kEarlyWeight: the weight is loaded with the row instead
//   of after the reduction (a dependent L2 round trip less, registers
//   more), for rows that fit in one wave: under CUDA graph replay 1 x 4096
//   bf16 2.07 -> 1.95 us, 16 x 4096 2.16 -> 2.06 us.
// Otherwise the weight (read by every row: L1/L2 hits) is re-read per row
// after the reduction, to leave registers for more resident rows.
// Outputs may alias inputs exactly (out/input, residual_out/residual): an
// element is read, then written, by the same thread, and the prefetched row
// is a different row.
template <typename T, int N, bool kFused, int kCache, bool kWarp,
          bool kPrefetch, bool kEarlyWeight = false>
__global__ void __launch_bounds__(512)
    rms_norm_cached_kernel(T* out, T* res_out, const T* in, const T* res,
                           const T* __restrict__ weight, RmsNormArgs a) {
  using P = Words<T, N>;
  __shared__ float shm[64];
  int iter = 0;
  const int64_t d = a.cols;
  const int npacks = static_cast<int>(d / N);  // launch: d % N == 0, small
  const int tx = blockDim.x;
  const int lane = threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  P xc[kCache];
  P rc[kFused ? kCache : 1];
  auto load_row = [&](int64_t row, P* xs, P* rs) {
    if (row < a.rows) {
      const T* x = in + row * a.in_stride;
      const T* r = kFused ? res + row * a.res_stride : nullptr;
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int i = lane + c * tx;
        if (i < npacks) {
          xs[c] = load_words<T, N>(x + static_cast<int64_t>(i) * N);
          if constexpr (kFused) {
            rs[c] = load_words<T, N>(r + static_cast<int64_t>(i) * N);
          }
        }
      }
    }
  };
  int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if constexpr (kPrefetch) {
    load_row(row, xc, rc);
  }
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * blockDim.y; r0 < a.rows;
       r0 += step, row += step) {
    P xn[kCache];
    P rn[kFused ? kCache : 1];
    if constexpr (kPrefetch) {
      load_row(row + step, xn, rn);  // next row: in flight during this one
    } else {
      load_row(row, xc, rc);
    }
    const bool valid = row < a.rows;
    P w[kCache];
    if constexpr (kEarlyWeight) {
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int i = lane + c * tx;
        if (i < npacks) {
          w[c] = load_words<T, N>(weight + static_cast<int64_t>(i) * N);
        }
      }
    }
    float ss = 0.0f;
    if (valid) {
      T* ro = kFused ? res_out + row * a.res_out_stride : nullptr;
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int i = lane + c * tx;
        if (i < npacks) {
          float f[N];
          to_float<T, N>(xc[c], f);
          if constexpr (kFused) {
            float g[N];
            to_float<T, N>(rc[c], g);
#pragma unroll
            for (int j = 0; j < N; ++j) {
              f[j] += g[j];
            }
            xc[c] = from_float<T, N>(f);  // residual_out, rounded to T
            store_words<T, N>(ro + static_cast<int64_t>(i) * N, xc[c]);
            to_float<T, N>(xc[c], f);
          }
#pragma unroll
          for (int j = 0; j < N; ++j) {
            ss += f[j] * f[j];
          }
        }
      }
    }
    if constexpr (kWarp) {
      for (int offset = tx >> 1; offset > 0; offset >>= 1) {
        ss += __shfl_xor_sync(0xffffffffu, ss, offset);
      }
    } else {
      ss = block_sum_at(ss, shm, iter++);
    }
    const float inv_rms = rsqrtf(ss / static_cast<float>(d) + a.eps);
    if (valid) {
      T* o = out + row * a.out_stride;
      if constexpr (!kEarlyWeight) {
#pragma unroll
        for (int c = 0; c < kCache; ++c) {
          const int i = lane + c * tx;
          if (i < npacks) {
            w[c] = load_words<T, N>(weight + static_cast<int64_t>(i) * N);
          }
        }
      }
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int i = lane + c * tx;
        if (i < npacks) {
          float f[N];
          float g[N];
          to_float<T, N>(xc[c], f);
          to_float<T, N>(w[c], g);
#pragma unroll
          for (int j = 0; j < N; ++j) {
            f[j] *= inv_rms;
          }
          // Round the normalized value to T before the weight multiply, as
          // transformers does (`weight * hidden.to(input_dtype)`).
          to_float<T, N>(from_float<T, N>(f), f);
#pragma unroll
          for (int j = 0; j < N; ++j) {
            f[j] *= g[j];
          }
          store_words<T, N>(o + static_cast<int64_t>(i) * N, from_float<T, N>(f));
        }
      }
    }
    if constexpr (kPrefetch) {
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        xc[c] = xn[c];
        if constexpr (kFused) {
          rc[c] = rn[c];
        }
      }
    }
  }
}

// Lean one-row-per-block kernel for 16-byte packs: exactly npacks / kC
// threads (kC packs each), 32-bit strides, no bounds checks before the
// loads, the row loaded with an L1 evict-first hint and the weight with
// evict-last (as Triton's reduction kernels load them), the mean by a
// multiply where the row length is a power of two (the same bits as the
// division). Same per-thread sum order as rms_norm_cached_kernel at the same
// kC, so the same bits. Against rms_norm_cached_kernel under CUDA graph
// replay on the H200 (docs/ab_h200_run16.txt, bf16, outputs bitwise
// identical): one wave of rows 16 x 4096 2.32 -> 1.99 us (torch.compile
// 2.32), fused 2.49 -> 2.15 (compile 2.10), 64 x 4096 2.43 -> 2.12, fused
// 2.63 -> 2.29, 16 x 8192 2.63 -> 2.38, fused 2.90 -> 2.60; fused 2048 x 4096
// (the persistent grid's zone) 18.28 -> 17.33 (compile 17.08). The hints
// matter: without them 16 x 4096 fused took 2.35. Lost: unfused 2048 x 4096
// (9.02 -> 10.23 at 1 pack a thread, 9.15 at 2), 4096 x 8192 at 4 packs
// (34.95 -> 35.75, fused 67.59 -> 73.47). Where the weight is loaded
// (with the row, copied to shared memory by cp.async, or after the
// reduction) timed the same.
struct RowArgs {
  int in_stride;
  int out_stride;
  int res_stride;
  int res_out_stride;
  int threads;
  int pow2;  // cols is a power of two: mean = ss * inv_cols exactly
  float eps;
  float cols_f;
  float inv_cols;
};

template <typename T, int N, bool kEvictFirst>
__device__ __forceinline__ Words<T, N> load_hinted(const T* p) {
  static_assert(sizeof(Words<T, N>) == 16, "16-byte packs only");
  Words<T, N> v;
  if constexpr (kEvictFirst) {
    asm volatile("ld.global.L1::evict_first.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.w[0]), "=r"(v.w[1]), "=r"(v.w[2]), "=r"(v.w[3])
                 : "l"(p));
  } else {
    asm volatile("ld.global.L1::evict_last.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.w[0]), "=r"(v.w[1]), "=r"(v.w[2]), "=r"(v.w[3])
                 : "l"(p));
  }
  return v;
}

// Outputs may alias inputs exactly: a thread reads each of its packs before
// it writes that pack.
template <typename T, int N, bool kFused, int kC>
__global__ void __launch_bounds__(512)
    rms_norm_row_kernel(T* out, T* res_out, const T* in, const T* res,
                        const T* __restrict__ weight, RowArgs a) {
  using P = Words<T, N>;
  __shared__ float shm[32];
  const int row = blockIdx.x;
  const int t = threadIdx.x;
  const int nt = blockDim.x;
  P xv[kC];
  P rv[kFused ? kC : 1];
  P wv[kC];
#pragma unroll
  for (int c = 0; c < kC; ++c) {
    wv[c] = load_hinted<T, N, false>(weight + (t + c * nt) * N);
  }
  float ss = 0.0f;
  // Every thread takes this branch (threads == blockDim.x): it is the code
  // that was measured; ptxas schedules the loads differently without it.
  if (t < a.threads) {
    const T* x = in + static_cast<int64_t>(row) * a.in_stride;
#pragma unroll
    for (int c = 0; c < kC; ++c) {
      xv[c] = load_hinted<T, N, true>(x + (t + c * nt) * N);
      if constexpr (kFused) {
        rv[c] = load_hinted<T, N, true>(res + static_cast<int64_t>(row) * a.res_stride + (t + c * nt) * N);
      }
    }
#pragma unroll
    for (int c = 0; c < kC; ++c) {
      float f[N];
      to_float<T, N>(xv[c], f);
      if constexpr (kFused) {
        float g[N];
        to_float<T, N>(rv[c], g);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          f[j] += g[j];
        }
        xv[c] = from_float<T, N>(f);  // residual_out, rounded to T
        store_words<T, N>(res_out + static_cast<int64_t>(row) * a.res_out_stride + (t + c * nt) * N, xv[c]);
        to_float<T, N>(xv[c], f);
      }
#pragma unroll
      for (int j = 0; j < N; ++j) {
        ss += f[j] * f[j];
      }
    }
  }
  ss = block_sum(ss, shm);
  const float mean = a.pow2 ? ss * a.inv_cols : ss / a.cols_f;
  const float inv_rms = rsqrtf(mean + a.eps);
  T* o = out + static_cast<int64_t>(row) * a.out_stride;
#pragma unroll
  for (int c = 0; c < kC; ++c) {
    float f[N];
    float g[N];
    to_float<T, N>(xv[c], f);
    to_float<T, N>(wv[c], g);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      f[j] *= inv_rms;
    }
    // Round the normalized value to T before the weight multiply, as
    // transformers does (`weight * hidden.to(input_dtype)`).
    to_float<T, N>(from_float<T, N>(f), f);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      f[j] *= g[j];
    }
    store_words<T, N>(o + (t + c * nt) * N, from_float<T, N>(f));
  }
}

// Launches rms_norm_row_kernel at kc (1, 2 or 4) packs per thread; false
// where it does not apply: packs under 16 bytes, a row that is not a
// multiple of 32 * kc packs or needs over 512 threads, strides or rows past
// 32 bits.
template <typename T, int N, bool kFused>
bool launch_row(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                const T* res, const T* weight, int kc, cudaStream_t stream) {
  if constexpr (N * sizeof(T) != 16) {
    return false;
  } else {
    const int64_t npacks = a.cols / N;
    const int64_t threads = npacks / kc;
    bool ok = npacks % (32 * kc) == 0 && threads <= 512 && a.rows <= 0x7fffffff;
    for (int64_t stride : {a.in_stride, a.out_stride, a.res_stride, a.res_out_stride}) {
      ok = ok && stride >= 0 && stride <= 0x7fffffff;
    }
    if (!ok) {
      return false;
    }
    const RowArgs r{static_cast<int>(a.in_stride), static_cast<int>(a.out_stride),
                    static_cast<int>(a.res_stride), static_cast<int>(a.res_out_stride),
                    static_cast<int>(threads), (a.cols & (a.cols - 1)) == 0 ? 1 : 0, a.eps,
                    static_cast<float>(a.cols), 1.0f / static_cast<float>(a.cols)};
    const dim3 grid(static_cast<unsigned>(a.rows));
    const dim3 block(static_cast<unsigned>(threads));
    switch (kc) {
      case 1:
        rms_norm_row_kernel<T, N, kFused, 1><<<grid, block, 0, stream>>>(out, res_out, in, res, weight, r);
        break;
      case 2:
        rms_norm_row_kernel<T, N, kFused, 2><<<grid, block, 0, stream>>>(out, res_out, in, res, weight, r);
        break;
      case 4:
        rms_norm_row_kernel<T, N, kFused, 4><<<grid, block, 0, stream>>>(out, res_out, in, res, weight, r);
        break;
      default:
        return false;
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return true;
  }
}

// SM counts, read once per device: launches (and CUDA graph captures) make
// no runtime calls after the first. (Atomics rather than std::call_once:
// call_once pulls in pthread_once, which needs glibc 2.34, past
// manylinux_2_28.)
int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  const bool cacheable = device >= 0 && device < kMaxDevices;
  if (cacheable) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) {
      return cached;
    }
  }
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  count = std::max(count, 1);
  if (cacheable) {
    cache[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

// Lets kKernel take `bytes` of dynamic shared memory (a launch asking for
// more than 48 KB fails otherwise). The attribute belongs to the current
// device: it is set on each device the kernel runs on (a flag per
// instantiation alone would leave a second GPU at 48 KB). Two threads may
// both set it the first time: the same value, harmless.
template <auto kKernel>
void allow_dynamic_smem(int bytes) {
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> done[kMaxDevices];
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  const bool cacheable = device >= 0 && device < kMaxDevices;
  if (cacheable && done[device].load(std::memory_order_acquire)) {
    return;
  }
  C10_CUDA_CHECK(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  if (cacheable) {
    done[device].store(true, std::memory_order_release);
  }
}

// Shared-memory staged kernel: one block per row (grid-stride past the
// launch limit); pass 1 loads the row (kSmemUnroll packs per thread in
// flight, 2 when fused), accumulates the sum of squares and keeps the row (x
// + residual, rounded, when fused) in shared memory; pass 2 normalizes it
// from there, a pack at a time. The row costs shared memory instead of
// registers: 40 registers instead of the register-cached kernel's 56 (76
// fused), so at 448 threads (bf16 rows of 14336) 3 rows are resident per SM
// instead of 2. A thread reads back only the packs it wrote (no barrier
// needed beyond block_sum's); outputs may alias inputs. With blockDim.x >=
// npacks / kSmemUnroll the per-thread order of the sum is
// rms_norm_cached_kernel's, so the outputs are bitwise the same. Measured
// under CUDA graph replay on the H200 (scripts/ab_kernels.py): 8192 x 14336
// bf16 120.8 -> 115.3 us (fused 241.7 -> 229.1), fp16 121.3 -> 115.1
// (245.0 -> 229.0), and as the replacement of the streaming kernel for fp32
// rows of 14336 at 512 threads 252.2 -> 236.0 us; where the cached kernel
// holds 4 or more rows per SM it lost (4096 x 8192 bf16 35.7 -> 38.1 us,
// fused 67.9 -> 79.3; fused 32768 x 4096 261 -> 295), and 256-thread blocks
// (7 resident rows, 32 registers) lost everywhere (8192 x 14336 bf16 129.3
// us, fp32 318.2).
constexpr int kSmemUnroll = 4;
constexpr int kSmemMaxThreads = 512;
// Longest row staged (bytes): 3 rows of it fit an SM's shared memory.
constexpr int64_t kSmemMaxRowBytes = 64 * 1024;
template <typename T, int N, bool kFused>
__global__ void __launch_bounds__(kSmemMaxThreads, 3)
    rms_norm_smem_kernel(T* out, T* res_out, const T* in, const T* res,
                         const T* __restrict__ weight, RmsNormArgs a) {
  using P = Words<T, N>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  P* srow = reinterpret_cast<P*>(smem_raw);
  __shared__ float shm[32];
  const int npacks = static_cast<int>(a.cols / N);
  const int tx = blockDim.x;
  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const T* x = in + row * a.in_stride;
    const T* r = kFused ? res + row * a.res_stride : nullptr;
    T* ro = kFused ? res_out + row * a.res_out_stride : nullptr;
    float ss = 0.0f;
    // Loads in flight per thread: fewer when fused (x and residual), which
    // spilled under the register cap with 4 (the sum's order is the pack
    // order either way).
    constexpr int kU = kFused ? 2 : kSmemUnroll;
    for (int i0 = threadIdx.x; i0 < npacks; i0 += kU * tx) {
      P xv[kU];
      P rv[kFused ? kU : 1];
#pragma unroll
      for (int c = 0; c < kU; ++c) {
        const int i = i0 + c * tx;
        if (i < npacks) {
          xv[c] = load_words<T, N>(x + static_cast<int64_t>(i) * N);
          if constexpr (kFused) {
            rv[c] = load_words<T, N>(r + static_cast<int64_t>(i) * N);
          }
        }
      }
#pragma unroll
      for (int c = 0; c < kU; ++c) {
        const int i = i0 + c * tx;
        if (i < npacks) {
          float f[N];
          to_float<T, N>(xv[c], f);
          if constexpr (kFused) {
            float g[N];
            to_float<T, N>(rv[c], g);
#pragma unroll
            for (int j = 0; j < N; ++j) {
              f[j] += g[j];
            }
            xv[c] = from_float<T, N>(f);
            store_words<T, N>(ro + static_cast<int64_t>(i) * N, xv[c]);
            to_float<T, N>(xv[c], f);
          }
#pragma unroll
          for (int j = 0; j < N; ++j) {
            ss += f[j] * f[j];
          }
          srow[i] = xv[c];
        }
      }
    }
    ss = block_sum(ss, shm);
    const float inv_rms = rsqrtf(ss / static_cast<float>(a.cols) + a.eps);
    T* o = out + row * a.out_stride;
    // One pack at a time (the weight is an L1/L2 hit): holding 4 weight and
    // row packs at once spilled under the register caps.
#pragma unroll 2
    for (int i = threadIdx.x; i < npacks; i += tx) {
      float f[N];
      float g[N];
      to_float<T, N>(srow[i], f);
      to_float<T, N>(load_words<T, N>(weight + static_cast<int64_t>(i) * N), g);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        f[j] *= inv_rms;
      }
      to_float<T, N>(from_float<T, N>(f), f);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        f[j] *= g[j];
      }
      store_words<T, N>(o + static_cast<int64_t>(i) * N, from_float<T, N>(f));
    }
    __syncthreads();  // the next row's pass 1 overwrites srow
  }
}

// Launches rms_norm_smem_kernel with `threads` (<= kSmemMaxThreads)
// threads, one block per row.
template <typename T, int N, bool kFused>
void launch_smem(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                 const T* res, const T* weight, int64_t threads,
                 cudaStream_t stream) {
  auto kernel = rms_norm_smem_kernel<T, N, kFused>;
  const size_t bytes = static_cast<size_t>(a.cols) * sizeof(T);
  if (bytes > 48 * 1024) {
    allow_dynamic_smem<rms_norm_smem_kernel<T, N, kFused>>(static_cast<int>(kSmemMaxRowBytes));
  }
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(a.rows, 0x7fffffff)));
  kernel<<<grid, static_cast<unsigned>(threads), bytes, stream>>>(
      out, res_out, in, res, weight, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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

// Packs per thread kept in registers (current and next row: 2 or, fused, 4
// sets of kCache packs, as 32-bit words).
constexpr int kCache = 4;
constexpr int kCachedMaxThreads = 512;  // __launch_bounds__ of the cached kernel
constexpr int kShortRowThreads = 64;    // short rows, one pass
// Rows per resident block from which one-pass blocks beat the persistent
// grid (measured on the H200: 7.8 and more won, 1.7 lost).
constexpr int64_t kOnePassMinWaves = 3;

// Blocks of rms_norm_cached_kernel<T, N, kFused, kCache, kWarp, kPrefetch>
// resident per SM at `threads` threads. Cached per instantiation and block
// size: launches after the first (and CUDA graph captures) make no runtime
// calls.
template <typename T, int N, bool kFused, bool kWarp, bool kPrefetch>
int blocks_per_sm(int threads) {
  constexpr int kSlots = kCachedMaxThreads / 32 + 1;
  static std::atomic<int> cache[kSlots];
  const int slot = threads / 32;
  const bool cacheable = threads % 32 == 0 && slot < kSlots;
  if (cacheable) {
    const int cached = cache[slot].load(std::memory_order_relaxed);
    if (cached > 0) {
      return cached;
    }
  }
  int blocks = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &blocks, rms_norm_cached_kernel<T, N, kFused, kCache, kWarp, kPrefetch>,
      threads, 0));
  blocks = std::max(blocks, 1);
  if (cacheable) {
    cache[slot].store(blocks, std::memory_order_relaxed);
  }
  return blocks;
}

// One wave of rows (rows <= SMs): a block per row, one pass, the weight
// loaded with the row, and as many threads as packs up to 512 (then 2 or 4
// packs per thread): each thread's serial chain (conversions, squares,
// normalizing) is its packs' length, and nothing else overlaps it. Against 4
// packs per thread (the many-rows geometry), under CUDA graph replay on the
// H200 (scripts/ab_kernels.py, docs/ab_h200_run9.txt, outputs bitwise
// identical): bf16 1 x 4096 1.94 -> 1.81 us, 16 x 4096 2.53 -> 2.40, fp16
// 2.56 -> 2.43, 16 x 8192 2.75 -> 2.70; fused 1 x 4096 2.29 -> 2.09, 16 x
// 4096 2.71 -> 2.54. A block sum where every thread reads the 16 partial
// sums lost with it (2.66 us at 16 x 4096). Rows of 16-byte packs that fit
// it (most hidden sizes) take the lean rms_norm_row_kernel at the same
// geometry instead.
template <typename T, int N, bool kFused>
void launch_one_wave(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                     const T* res, const T* weight, cudaStream_t stream) {
  const int64_t npacks = a.cols / N;
  const int kc = npacks <= kCachedMaxThreads ? 1 : npacks <= 2 * kCachedMaxThreads ? 2 : kCache;
  if (launch_row<T, N, kFused>(a, out, res_out, in, res, weight, kc, stream)) {
    return;
  }
  const dim3 grid(static_cast<unsigned>(a.rows));
  const auto threads = [&](int64_t per_thread) {
    return static_cast<unsigned>((npacks + per_thread - 1) / per_thread + 31) / 32 * 32;
  };
  if (npacks <= kCachedMaxThreads) {
    rms_norm_cached_kernel<T, N, kFused, 1, false, false, true>
        <<<grid, threads(1), 0, stream>>>(out, res_out, in, res, weight, a);
  } else if (npacks <= 2 * kCachedMaxThreads) {
    rms_norm_cached_kernel<T, N, kFused, 2, false, false, true>
        <<<grid, threads(2), 0, stream>>>(out, res_out, in, res, weight, a);
  } else {
    rms_norm_cached_kernel<T, N, kFused, kCache, false, false, true>
        <<<grid, threads(kCache), 0, stream>>>(out, res_out, in, res, weight, a);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Short rows (<= 32 * kCache packs: 1024 bf16 elements): a power-of-two
// group of lanes per row, at most 2 packs per lane up to 64 packs (q_norm's
// 128-wide bf16 rows take 8 lanes), in one pass in 64-thread blocks (8 rows
// of 128) with the registers fitted to the packs a lane holds and the weight
// loaded with the row. Under CUDA graph replay on the H200, bf16: against the
// persistent prefetching grid of 256-thread blocks with 4-pack registers
// (docs/ab_h200_run10.txt) 262144 x 128 36.2 -> 34.1 us, fused 68.9 ->
// 66.4, fused 16384 x 1024 36.6 -> 35.0 (127 registers when prefetching);
// the weight with the row (docs/ab_h200_run16.txt) 262144 x 128 34.40 ->
// 34.18, fused 16384 x 1024 35.26 -> 35.03, and unfused 1024-element rows,
// which kept the persistent grid before (18.34 us; one pass with the weight
// after the reduction 18.57), 18.06. Outputs bitwise identical.
template <typename T, int N, bool kFused, int kC>
void launch_lane_groups(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                        const T* res, const T* weight, dim3 block, cudaStream_t stream) {
  auto kernel = rms_norm_cached_kernel<T, N, kFused, kC, true, false, true>;
  const int64_t grid = std::min<int64_t>((a.rows + block.y - 1) / block.y, 0x7fffffff);
  kernel<<<static_cast<unsigned>(grid), block, 0, stream>>>(out, res_out, in, res, weight, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, int N, bool kFused>
void launch_short_rows(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                       const T* res, const T* weight, cudaStream_t stream) {
  const int64_t npacks = a.cols / N;
  int64_t tx = 1;
  while (tx < 32 && tx * 2 < npacks) {
    tx *= 2;
  }
  const int64_t per_lane = (npacks + tx - 1) / tx;
  const dim3 block(static_cast<unsigned>(tx),
                   static_cast<unsigned>(std::max<int64_t>(1, kShortRowThreads / tx)));
  if (per_lane <= 1) {
    launch_lane_groups<T, N, kFused, 1>(a, out, res_out, in, res, weight, block, stream);
  } else if (per_lane <= 2) {
    launch_lane_groups<T, N, kFused, 2>(a, out, res_out, in, res, weight, block, stream);
  } else {
    launch_lane_groups<T, N, kFused, kCache>(a, out, res_out, in, res, weight, block, stream);
  }
}

template <typename T, int N, bool kFused>
void launch_n(const RmsNormArgs& a, T* out, T* res_out, const T* in,
              const T* res, const T* weight, cudaStream_t stream) {
  const int64_t npacks = a.cols / N;
  const int sms = sm_count();
  const auto round32 = [](int64_t v) { return (v + 31) / 32 * 32; };
  if constexpr (N > 1) {
    if (npacks <= static_cast<int64_t>(kCache) * kCachedMaxThreads) {
      if (npacks <= 32 * kCache) {
        launch_short_rows<T, N, kFused>(a, out, res_out, in, res, weight, stream);
        return;
      }
      // A block per row, kCache packs per thread (the fewest threads that
      // cover the row: more rows resident per SM). One wave of rows: one
      // pass, weight loaded early; at least kOnePassMinWaves rows per
      // resident block: one pass; in between, the persistent pipelined grid.
      const int64_t threads = round32((npacks + kCache - 1) / kCache);
      const int64_t resident =
          static_cast<int64_t>(sms) *
          blocks_per_sm<T, N, kFused, false, false>(static_cast<int>(threads));
      const unsigned one_pass_grid =
          static_cast<unsigned>(std::min<int64_t>(a.rows, 0x7fffffff));
      if (a.rows <= sms) {
        launch_one_wave<T, N, kFused>(a, out, res_out, in, res, weight, stream);
        return;
      }
      // 16-bit rows for which the cached kernel keeps at most 2 rows per SM
      // (bf16 / fp16 rows over ~12K elements) are staged in shared memory.
      if (a.rows >= kOnePassMinWaves * resident && sizeof(T) == 2 &&
          resident <= 2 * static_cast<int64_t>(sms)) {
        launch_smem<T, N, kFused>(a, out, res_out, in, res, weight, threads,
                                  stream);
        return;
      }
      if (a.rows >= kOnePassMinWaves * resident) {
        rms_norm_cached_kernel<T, N, kFused, kCache, false, false>
            <<<one_pass_grid, static_cast<unsigned>(threads), 0, stream>>>(
                out, res_out, in, res, weight, a);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        return;
      }
      // Fused rows between: the lean row kernel at 1 or 2 packs per thread
      // (fused 2048 x 4096 bf16 18.28 -> 17.33 us; unfused lost, see
      // rms_norm_row_kernel).
      if (kFused && npacks <= 2 * kCachedMaxThreads &&
          launch_row<T, N, kFused>(a, out, res_out, in, res, weight,
                                   npacks <= kCachedMaxThreads ? 1 : 2, stream)) {
        return;
      }
      auto kernel = rms_norm_cached_kernel<T, N, kFused, kCache, false, true>;
      const int64_t fit =
          static_cast<int64_t>(sms) *
          blocks_per_sm<T, N, kFused, false, true>(static_cast<int>(threads));
      const dim3 grid(static_cast<unsigned>(std::min<int64_t>(a.rows, fit)));
      kernel<<<grid, static_cast<unsigned>(threads), 0, stream>>>(
          out, res_out, in, res, weight, a);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
  }
  // Few rows: wide blocks so each row finishes fast. Many rows: 256-thread
  // blocks so several rows per SM overlap their reductions, unless the rows
  // are long: pass 2 re-reads the row, and 8 resident 256-thread blocks of
  // rows over 16 KB overflow L1, so the re-read went to DRAM (Nsight Compute,
  // H200, 8192 x 14336 float32 at 256 threads: 939 MB read for a 470 MB
  // input, 336 us, 66 % of the copy bandwidth). 1024-thread blocks keep 2
  // rows per SM: 474 MB read, 250 us, 89 %.
  const int64_t row_bytes = a.cols * static_cast<int64_t>(sizeof(T));
  // Long rows with many rows to go (fp32 rows of 8K-16K elements): staged in
  // shared memory, 512 threads (the streaming kernel's re-read of the row is
  // what cost it: 252.2 -> 236.0 us at 8192 x 14336 fp32).
  if constexpr (N > 1) {
    if (row_bytes <= kSmemMaxRowBytes && a.rows >= 2 * static_cast<int64_t>(sms)) {
      launch_smem<T, N, kFused>(a, out, res_out, in, res, weight,
                                std::min<int64_t>(kSmemMaxThreads, round32(npacks)), stream);
      return;
    }
  }
  const int64_t max_threads =
      (a.rows < 2 * static_cast<int64_t>(sms) || row_bytes > 16384) ? 1024 : 256;
  const int64_t threads = std::min<int64_t>(max_threads, round32(npacks));
  const int64_t max_blocks = static_cast<int64_t>(sms) * 256;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(a.rows, max_blocks)));
  rms_norm_stream_kernel<T, N, kFused><<<grid, static_cast<unsigned>(threads), 0, stream>>>(
      out, res_out, in, res, weight, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, bool kFused>
void launch_typed(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                  const T* res, const T* weight, cudaStream_t stream) {
  int n;
  if constexpr (kFused) {
    n = pick_pack<T>({out, res_out, in, res, weight},
                     {a.cols, a.in_stride, a.out_stride, a.res_stride,
                      a.res_out_stride});
  } else {
    n = pick_pack<T>({out, in, weight}, {a.cols, a.in_stride, a.out_stride});
  }
  constexpr int kMax = static_cast<int>(16 / sizeof(T));
  switch (n) {
    case kMax:
      launch_n<T, kMax, kFused>(a, out, res_out, in, res, weight, stream);
      break;
    case kMax / 2:
      launch_n<T, kMax / 2, kFused>(a, out, res_out, in, res, weight, stream);
      break;
    case kMax / 4:
      launch_n<T, kMax / 4, kFused>(a, out, res_out, in, res, weight, stream);
      break;
    default:  // one element at a time (only reachable for 16-bit types)
      launch_n<T, 1, kFused>(a, out, res_out, in, res, weight, stream);
      break;
  }
}

template <typename T>
void launch_dtype(const RmsNormArgs& a, at::Tensor& out,
                  at::Tensor& residual_out, const at::Tensor& input,
                  const at::Tensor& residual, const at::Tensor& weight,
                  cudaStream_t stream) {
  if (residual.defined()) {
    launch_typed<T, true>(a, out.data_ptr<T>(), residual_out.data_ptr<T>(),
                          input.const_data_ptr<T>(),
                          residual.const_data_ptr<T>(),
                          weight.const_data_ptr<T>(), stream);
  } else {
    launch_typed<T, false>(a, out.data_ptr<T>(), nullptr,
                           input.const_data_ptr<T>(), nullptr,
                           weight.const_data_ptr<T>(), stream);
  }
}

}  // namespace

KB_RMS_HIDDEN void launch_rms_norm(const RmsNormArgs& args, at::Tensor& out,
                                   at::Tensor& residual_out,
                                   const at::Tensor& input,
                                   const at::Tensor& residual,
                                   const at::Tensor& weight) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (input.scalar_type()) {
    case at::kFloat:
      launch_dtype<float>(args, out, residual_out, input, residual, weight,
                          stream);
      break;
    case at::kHalf:
      launch_dtype<c10::Half>(args, out, residual_out, input, residual, weight,
                              stream);
      break;
    case at::kBFloat16:
      launch_dtype<c10::BFloat16>(args, out, residual_out, input, residual,
                                  weight, stream);
      break;
    default:
      TORCH_CHECK(false, "rmsnorm: unsupported dtype ", input.scalar_type());
  }
}

}  // namespace kb_rmsnorm
