// CUDA implementation of the rotary position embedding.
//
// One launch covers q and k: one thread per (token, head, pack)
// (rotary_flat_kernel) while that count fits 31 bits; beyond it
// rotary_kernel, where a thread block covers blockDim.z tokens (batch,
// seq positions); threadIdx.x walks the packs of the first half of
// head_dim, threadIdx.y slots of up to kHeadsPerStep heads (q heads, then k
// heads), whose loads are all issued before any store. A thread loads its
// cos/sin packs (both halves) once per token and keeps them in registers
// across its heads; for each head it loads the pack at i and at
// i + head_dim/2, rotates them in float32 and stores both, so the output may
// be the input itself. Packs move up to 16 bytes; the width is chosen at
// launch from the alignment of every pointer and stride and from
// head_dim/2, falling back to one element.
//
// qk_norm_rotary (Qwen3's q_norm / k_norm, then the rotation) needs the sum
// of squares of a whole head row before it can rotate any pack of it; the row
// is spread over a group of threads that hold it in registers and combine
// their partial sums with warp shuffles, so q and k are still read and
// written once (qk_norm_rotary_kernel). Rows too long for one group's
// registers take qk_norm_rotary_rows_kernel, which re-reads the row from
// cache after the reduction.
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
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#if defined(__GNUC__) || defined(__clang__)
#define KB_ROT_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_ROT_HIDDEN
#endif

namespace kb_rotary {

// Must match torch-ext/torch_binding.h.
struct RotaryArgs {
  int64_t batch;
  int64_t seq;
  int64_t q_heads;
  int64_t k_heads;
  int64_t head_dim;
  int64_t q_stride[3];
  int64_t k_stride[3];
  int64_t q_out_stride[3];
  int64_t k_out_stride[3];
  int64_t cos_stride[2];
  int64_t sin_stride[2];
};

namespace {

// A pack of N elements held as 32-bit words (two 16-bit elements to a word):
// c10's 16-bit types in a `T v[N]` array take a register per element, twice
// the words. N * sizeof(T) >= 4; one-element 16-bit packs use Scalar below.
template <typename T, int N>
struct alignas(sizeof(T) * N) Words {
  static constexpr int kW = static_cast<int>(sizeof(T)) * N / 4;
  uint32_t w[kW];
};

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

// Load / store N elements and convert to / from float (rounding to nearest
// even, as c10's conversions).
template <typename T, int N>
struct Vec {
  static constexpr bool kWords = static_cast<int>(sizeof(T)) * N >= 4;
  using Storage = std::conditional_t<kWords, Words<T, N>, T>;
  Storage s;

  __device__ __forceinline__ void load(const T* p) {
    s = *reinterpret_cast<const Storage*>(p);
  }
  __device__ __forceinline__ void store(T* p) const {
    *reinterpret_cast<Storage*>(p) = s;
  }
  __device__ __forceinline__ void to_float(float (&f)[N]) const {
    if constexpr (!kWords) {
      f[0] = static_cast<float>(s);
    } else if constexpr (std::is_same_v<T, float>) {
#pragma unroll
      for (int j = 0; j < N; ++j) {
        f[j] = __uint_as_float(s.w[j]);
      }
    } else {
#pragma unroll
      for (int k = 0; k < N / 2; ++k) {
        const float2 v = unpack2<T>(s.w[k]);
        f[2 * k] = v.x;
        f[2 * k + 1] = v.y;
      }
    }
  }
  __device__ __forceinline__ void from_float(const float (&f)[N]) {
    if constexpr (!kWords) {
      s = static_cast<T>(f[0]);
    } else if constexpr (std::is_same_v<T, float>) {
#pragma unroll
      for (int j = 0; j < N; ++j) {
        s.w[j] = __float_as_uint(f[j]);
      }
    } else {
#pragma unroll
      for (int k = 0; k < N / 2; ++k) {
        s.w[k] = pack2<T>(f[2 * k], f[2 * k + 1]);
      }
    }
  }
};

// Rotates one head's pack pair (x1 at off, x2 at off + half) in float32 with
// its cos/sin packs and stores both halves at o. cos/sin stay packed in
// registers; unpacking them per head is a shift or a mask a value.
template <typename T, int N>
__device__ __forceinline__ void rotate_store(
    const Vec<T, N>& x1, const Vec<T, N>& x2, const Vec<T, N>& c1,
    const Vec<T, N>& c2, const Vec<T, N>& s1, const Vec<T, N>& s2, T* o,
    int64_t off, int64_t half) {
  float fc1[N], fc2[N], fs1[N], fs2[N], a1[N], a2[N], o1[N], o2[N];
  c1.to_float(fc1);
  c2.to_float(fc2);
  s1.to_float(fs1);
  s2.to_float(fs2);
  x1.to_float(a1);
  x2.to_float(a2);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    o1[j] = a1[j] * fc1[j] - a2[j] * fs1[j];
    o2[j] = a2[j] * fc2[j] + a1[j] * fs2[j];
  }
  Vec<T, N> v1, v2;
  v1.from_float(o1);
  v2.from_float(o2);
  v1.store(o + off);
  v2.store(o + off + half);
}

// Heads each thread rotates per step: all of a step's loads (2 packs a head)
// are issued before any math or store, so a thread has 2 * kHeadsPerStep
// independent 16-byte loads in flight (one head at a time held the H100 at
// ~79 % of the copy bandwidth).
constexpr int kHeadsPerStep = 4;

// Block: blockDim.x threads along the packs of the first half of head_dim,
// blockDim.y head slots (q heads, then k heads), blockDim.z tokens (batch x
// seq positions). A thread loads its cos/sin packs (both halves) once per
// token and keeps them in registers across its heads; per head it loads the
// pack at i and at i + head_dim/2, rotates them in float32 and stores both,
// so the output may be the input itself. The pack loop only runs more than
// once for head_dim/2 > blockDim.x * N (head_dim above 4096 in bf16).
template <typename T, int N>
__global__ void __launch_bounds__(256, 2)
    rotary_kernel(T* q_out, T* k_out, const T* q, const T* k,
                  const T* __restrict__ cos, const T* __restrict__ sin,
                  RotaryArgs a) {
  constexpr int U = kHeadsPerStep;
  const int64_t half = a.head_dim / 2;
  const int64_t npacks = half / N;  // launch guarantees half % N == 0
  const int64_t tokens = a.batch * a.seq;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t hstep = static_cast<int64_t>(blockDim.y) * U;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
       t < tokens; t += static_cast<int64_t>(gridDim.x) * blockDim.z) {
    const int64_t b = t / a.seq;
    const int64_t p = t - b * a.seq;
    const T* crow = cos + b * a.cos_stride[0] + p * a.cos_stride[1];
    const T* srow = sin + b * a.sin_stride[0] + p * a.sin_stride[1];
    // Per-token bases of q, k and the outputs (head 0, this position).
    const T* qb = q + b * a.q_stride[0] + p * a.q_stride[2];
    const T* kb = k + b * a.k_stride[0] + p * a.k_stride[2];
    T* qob = q_out + b * a.q_out_stride[0] + p * a.q_out_stride[2];
    T* kob = k_out + b * a.k_out_stride[0] + p * a.k_out_stride[2];
    for (int64_t pk = threadIdx.x; pk < npacks; pk += blockDim.x) {
      const int64_t off = pk * N;
      Vec<T, N> c1, c2, s1, s2;
      c1.load(crow + off);
      c2.load(crow + off + half);
      s1.load(srow + off);
      s2.load(srow + off + half);
      for (int64_t h0 = threadIdx.y; h0 < heads; h0 += hstep) {
        Vec<T, N> x1[U], x2[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t h = h0 + static_cast<int64_t>(u) * blockDim.y;
          if (h < heads) {
            // Select scalars, not pointers into the parameter arrays (which
            // would force a local-memory copy of the arguments).
            const bool is_q = h < a.q_heads;
            const T* x = is_q ? qb + h * a.q_stride[1]
                              : kb + (h - a.q_heads) * a.k_stride[1];
            x1[u].load(x + off);
            x2[u].load(x + off + half);
          }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t h = h0 + static_cast<int64_t>(u) * blockDim.y;
          if (h < heads) {
            const bool is_q = h < a.q_heads;
            T* o = is_q ? qob + h * a.q_out_stride[1]
                        : kob + (h - a.q_heads) * a.k_out_stride[1];
            rotate_store<T, N>(x1[u], x2[u], c1, c2, s1, s2, o, off, half);
          }
        }
      }
    }
  }
}

// Division by a run-time divisor d < 2^31 of a numerator n < 2^31 as a
// multiply-high, an add and a shift (Granlund-Montgomery: l = ceil(log2 d),
// m = floor(2^32 (2^l - d) / d) + 1; umulhi(n, m) < n, so the add cannot
// overflow). The host computes m and l once per launch.
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

// Flat kernel: one thread per (token, head, pack of the first half of
// head_dim), heads fastest after the pack, so a warp covers consecutive
// heads of a token (contiguous in the usual [batch, seq, heads, head_dim]
// storage); cos/sin are re-read per head from L1. Every thread is
// independent and needs few registers, where rotary_kernel keeps cos/sin and
// 4 heads in ~118 registers. Indices are 32-bit (total < 2^31, the launch
// checks) and every index division (by npacks, heads and seq) is a
// multiply-high: the first flat kernel's 32-bit divisions by run-time npacks
// and heads and its 64-bit division by seq cost more instructions than its
// two 16-byte loads, and made it 4 % slower than rotary_kernel at 112 + 28
// heads. Measured under CUDA graph replay on the H200, bf16, outputs bitwise
// identical (scripts/ab_kernels.py; before: that flat kernel up to 128 heads,
// rotary_kernel above): 16 x 4096 2.83 -> 2.25 us, 2048 x 4096 13.9 -> 12.7,
// Qwen3's 16 + 8 heads at 16384 tokens 57.0 -> 52.0, 4096 x 8192 46.8 ->
// 43.0, and 112 + 28 heads at 8192 tokens 150.6 -> 142.3 (fp32 290.9 ->
// 281.4); 128-thread blocks measured 0-1 % faster than 256.
template <typename T, int N>
__global__ void __launch_bounds__(256)
    rotary_flat_kernel(T* q_out, T* k_out, const T* q, const T* k,
                            const T* __restrict__ cos, const T* __restrict__ sin,
                            RotaryArgs a, FastDiv fnp, FastDiv fheads,
                            FastDiv fseq, uint32_t total) {
  const uint32_t g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= total) {
    return;
  }
  const uint32_t rest = fnp.div(g);
  const uint32_t pk = g - rest * fnp.d;
  const uint32_t t = fheads.div(rest);
  const uint32_t h = rest - t * fheads.d;
  const uint32_t b = fseq.div(t);
  const uint32_t p = t - b * fseq.d;
  const int64_t half = a.head_dim / 2;
  const int64_t off = static_cast<int64_t>(pk) * N;
  const bool is_q = h < a.q_heads;
  const int64_t hk = static_cast<int64_t>(h) - (is_q ? 0 : a.q_heads);
  const T* x = is_q ? q + b * a.q_stride[0] + p * a.q_stride[2] + hk * a.q_stride[1]
                    : k + b * a.k_stride[0] + p * a.k_stride[2] + hk * a.k_stride[1];
  T* o = is_q ? q_out + b * a.q_out_stride[0] + p * a.q_out_stride[2] +
                    hk * a.q_out_stride[1]
              : k_out + b * a.k_out_stride[0] + p * a.k_out_stride[2] +
                    hk * a.k_out_stride[1];
  const T* crow = cos + b * a.cos_stride[0] + p * a.cos_stride[1];
  const T* srow = sin + b * a.sin_stride[0] + p * a.sin_stride[1];
  Vec<T, N> x1, x2, c1, c2, s1, s2;
  x1.load(x + off);
  x2.load(x + off + half);
  c1.load(crow + off);
  c2.load(crow + off + half);
  s1.load(srow + off);
  s2.load(srow + off + half);
  rotate_store<T, N>(x1, x2, c1, c2, s1, s2, o, off, half);
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

// pick_pack over the given pointers and every extent/stride of a launch.
template <typename T>
int pick_args_pack(const RotaryArgs& a,
                   std::initializer_list<const void*> ptrs) {
  return pick_pack<T>(
      ptrs,
      {a.head_dim / 2, a.q_stride[0], a.q_stride[1], a.q_stride[2],
       a.k_stride[0], a.k_stride[1], a.k_stride[2], a.q_out_stride[0],
       a.q_out_stride[1], a.q_out_stride[2], a.k_out_stride[0],
       a.k_out_stride[1], a.k_out_stride[2], a.cos_stride[0],
       a.cos_stride[1], a.sin_stride[0], a.sin_stride[1]});
}

constexpr int kThreads = 256;  // __launch_bounds__ of the kernel
constexpr int kFlatThreads = 128;  // rotary_flat_kernel's blocks

template <typename T, int N>
void launch_n(const RotaryArgs& a, T* q_out, T* k_out, const T* q, const T* k,
              const T* cos, const T* sin, cudaStream_t stream) {
  const int64_t npacks = a.head_dim / 2 / N;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t tokens = a.batch * a.seq;
  // x: the packs of half a head (capped); y: head slots, each taking up to
  // kHeadsPerStep heads per step, spread evenly (80 heads: 20 slots of 4);
  // z: tokens per block, to fill kThreads for small head counts.
  const int64_t total = tokens * heads * npacks;
  if (total + kFlatThreads < (int64_t{1} << 31) && a.seq < (int64_t{1} << 31)) {
    const auto blocks = static_cast<unsigned>((total + kFlatThreads - 1) / kFlatThreads);
    rotary_flat_kernel<T, N><<<std::max(1u, blocks), kFlatThreads, 0, stream>>>(
        q_out, k_out, q, k, cos, sin, a, make_fastdiv(static_cast<uint32_t>(npacks)),
        make_fastdiv(static_cast<uint32_t>(heads)), make_fastdiv(static_cast<uint32_t>(a.seq)),
        static_cast<uint32_t>(total));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  const int64_t bx = std::min<int64_t>(npacks, kThreads);
  const int64_t steps = std::max<int64_t>(
      1, (heads + (kThreads / bx) * kHeadsPerStep - 1) /
             ((kThreads / bx) * kHeadsPerStep));
  const int64_t by = std::max<int64_t>(
      1, std::min<int64_t>(kThreads / bx,
                           (heads + steps * kHeadsPerStep - 1) /
                               (steps * kHeadsPerStep)));
  const int64_t bz = std::max<int64_t>(
      1, std::min<int64_t>(kThreads / (bx * by), std::min<int64_t>(tokens, 64)));
  const int64_t blocks = (tokens + bz - 1) / bz;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(blocks, 0x7fffffff)));
  const dim3 block(static_cast<unsigned>(bx), static_cast<unsigned>(by),
                   static_cast<unsigned>(bz));
  rotary_kernel<T, N><<<grid, block, 0, stream>>>(q_out, k_out, q, k, cos, sin,
                                                  a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_typed(const RotaryArgs& a, T* q_out, T* k_out, const T* q,
                  const T* k, const T* cos, const T* sin,
                  cudaStream_t stream) {
  const int n = pick_args_pack<T>(a, {q_out, k_out, q, k, cos, sin});
  constexpr int kMax = static_cast<int>(16 / sizeof(T));
  switch (n) {
    case kMax:
      launch_n<T, kMax>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
    case kMax / 2:
      launch_n<T, kMax / 2>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
    case kMax / 4:
      launch_n<T, kMax / 4>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
    default:  // one element at a time (only reachable for 16-bit types)
      launch_n<T, 1>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
  }
}

template <typename T>
void launch_dtype(const RotaryArgs& a, at::Tensor& q_out, at::Tensor& k_out,
                  const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& cos, const at::Tensor& sin,
                  cudaStream_t stream) {
  launch_typed<T>(a, q_out.data_ptr<T>(), k_out.data_ptr<T>(),
                  q.const_data_ptr<T>(), k.const_data_ptr<T>(),
                  cos.const_data_ptr<T>(), sin.const_data_ptr<T>(), stream);
}


// ---------------------------------------------------------------------------
// qk_norm_rotary
// ---------------------------------------------------------------------------

// The fused kernels' addressing (rotary_flat_kernel keeps its own inline
// copy: routing it through these helpers changed its generated code).

// Batch and position of token t (tokens run batch-major).
struct TokenPos {
  int64_t b;
  int64_t p;
};

__device__ __forceinline__ TokenPos token_pos(int64_t t, int64_t seq) {
  const int64_t b = t / seq;
  return {b, t - b * seq};
}

// The cos or sin row of a token.
template <typename T>
__device__ __forceinline__ const T* token_row(const T* x,
                                              const int64_t (&stride)[2],
                                              TokenPos tp) {
  return x + tp.b * stride[0] + tp.p * stride[1];
}

// Row of head h of a token, q heads first, then k heads. Each side of the
// select is a whole address: selecting a pointer into the parameter arrays
// instead would force a local-memory copy of the arguments.
template <typename T>
__device__ __forceinline__ T* head_row(T* q, T* k, const int64_t (&qs)[3],
                                       const int64_t (&ks)[3], int64_t q_heads,
                                       TokenPos tp, int64_t h) {
  return h < q_heads ? q + tp.b * qs[0] + tp.p * qs[2] + h * qs[1]
                     : k + tp.b * ks[0] + tp.p * ks[2] + (h - q_heads) * ks[1];
}

// The pack at off and its rotation partner at off + half.
template <typename T, int N>
__device__ __forceinline__ void load_halves(Vec<T, N>& v1, Vec<T, N>& v2,
                                            const T* row, int64_t off,
                                            int64_t half) {
  v1.load(row + off);
  v2.load(row + off + half);
}

// Sum over the G lanes of an aligned group (G a power of two <= 32). Every
// lane of the warp must take part (the mask is the full warp), so the kernels
// below keep out-of-range threads alive with zero partial sums.
__device__ __forceinline__ float group_sum(float v, int G) {
  for (int o = G / 2; o > 0; o >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;
}

// Loads a head row's pack pair at off as float32 and adds its squares to ss.
template <typename T, int N>
__device__ __forceinline__ void load_squares(const T* x, int64_t off,
                                             int64_t half, float (&a1)[N],
                                             float (&a2)[N], float& ss) {
  Vec<T, N> x1, x2;
  load_halves(x1, x2, x, off, half);
  x1.to_float(a1);
  x2.to_float(a2);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    ss += a1[j] * a1[j] + a2[j] * a2[j];
  }
}

template <typename T, int N>
__device__ __forceinline__ void norm_rotate_store_loaded(
    const float (&a1)[N], const float (&a2)[N], float inv_rms, const Vec<T, N>& w1,
    const Vec<T, N>& w2, const Vec<T, N>& c1, const Vec<T, N>& c2, const Vec<T, N>& s1,
    const Vec<T, N>& s2, T* o, int64_t off, int64_t half);

// Normalizes one pack pair of a head row (a1 at off, a2 at off + half, in
// float32) with the row's inv_rms and the weight packs of w, rotates it with
// the cos/sin packs of the token's rows and stores both halves at o; one
// rounding, at the store.
template <typename T, int N>
__device__ __forceinline__ void norm_rotate_store(
    const float (&a1)[N], const float (&a2)[N], float inv_rms, const T* w,
    const T* crow, const T* srow, T* o, int64_t off, int64_t half) {
  Vec<T, N> w1, w2, c1, c2, s1, s2;
  load_halves(w1, w2, w, off, half);
  load_halves(c1, c2, crow, off, half);
  load_halves(s1, s2, srow, off, half);
  norm_rotate_store_loaded<T, N>(a1, a2, inv_rms, w1, w2, c1, c2, s1, s2, o, off, half);
}

// norm_rotate_store with the weight, cos and sin packs already loaded.
template <typename T, int N>
__device__ __forceinline__ void norm_rotate_store_loaded(
    const float (&a1)[N], const float (&a2)[N], float inv_rms, const Vec<T, N>& w1,
    const Vec<T, N>& w2, const Vec<T, N>& c1, const Vec<T, N>& c2, const Vec<T, N>& s1,
    const Vec<T, N>& s2, T* o, int64_t off, int64_t half) {
  float fw1[N], fw2[N], fc1[N], fc2[N], fs1[N], fs2[N], o1[N], o2[N];
  w1.to_float(fw1);
  w2.to_float(fw2);
  c1.to_float(fc1);
  c2.to_float(fc2);
  s1.to_float(fs1);
  s2.to_float(fs2);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const float y1 = a1[j] * inv_rms * fw1[j];
    const float y2 = a2[j] * inv_rms * fw2[j];
    o1[j] = y1 * fc1[j] - y2 * fs1[j];
    o2[j] = y2 * fc2[j] + y1 * fs2[j];
  }
  Vec<T, N> v1, v2;
  v1.from_float(o1);
  v2.from_float(o2);
  v1.store(o + off);
  v2.store(o + off + half);
}

// One thread per (head row, pack of the first half of head_dim), as
// rotary_flat_kernel, with the G >= npacks threads of a row forming an
// aligned group of the warp (G a power of two, threads past npacks idle):
// each holds its two packs in registers while the group reduces the row's
// sum of squares, so the row is read once. Rows are numbered heads fastest
// within a token (q heads, then k heads). Head and token come from
// multiply-high divisions (rows < 2^31) and blocks are 128 threads: against
// the 32-bit divisions by heads, the 64-bit one by seq and 256 threads, under
// CUDA graph replay on the H200, bf16, outputs bitwise identical
// (scripts/ab_kernels.py): 8 x 2048 tokens 67.6 -> 61.5 us, 1 x 16 2.80 ->
// 2.61, 4 x 512 10.5 -> 10.1 (fast divisions alone: 66.9 / 2.68 / 10.3).
// The weight, cos and sin packs are loaded with the row, before the group's
// reduction, not after it (behind the early return, the compiler kept them
// after the shuffles: a dependent L2 round trip per row): 8 x 2048 62.2 ->
// 55.2 us, 1 x 16 2.67 -> 2.35, 4 x 512 10.3 -> 9.05, bitwise identical
// (docs/ab_h200_run9.txt).
template <typename T, int N>
__global__ void __launch_bounds__(256)
    qk_norm_rotary_kernel(T* q_out, T* k_out, const T* q, const T* k,
                          const T* __restrict__ qw, const T* __restrict__ kw,
                          const T* __restrict__ cos, const T* __restrict__ sin,
                          RotaryArgs a, float eps, uint32_t npacks,
                          uint32_t log2g, uint32_t rows, FastDiv fheads,
                          FastDiv fseq) {
  const uint32_t g = blockIdx.x * blockDim.x + threadIdx.x;
  const uint32_t pk = g & ((1u << log2g) - 1u);
  const uint32_t row = g >> log2g;
  const bool active = row < rows && pk < npacks;
  const int64_t half = a.head_dim / 2;
  const int64_t off = static_cast<int64_t>(pk) * N;
  const uint32_t t = fheads.div(row);
  const int64_t h = row - t * fheads.d;
  const uint32_t b = fseq.div(t);
  const TokenPos tp = {b, t - b * fseq.d};
  float a1[N], a2[N];
  float ss = 0.0f;
  Vec<T, N> w1, w2, c1, c2, s1, s2;
  if (active) {
    load_squares<T, N>(head_row(q, k, a.q_stride, a.k_stride, a.q_heads, tp, h),
                       off, half, a1, a2, ss);
    load_halves(w1, w2, h < a.q_heads ? qw : kw, off, half);
    load_halves(c1, c2, token_row(cos, a.cos_stride, tp), off, half);
    load_halves(s1, s2, token_row(sin, a.sin_stride, tp), off, half);
  }
  ss = group_sum(ss, 1 << log2g);
  if (!active) {
    return;
  }
  const float inv_rms = rsqrtf(ss / static_cast<float>(a.head_dim) + eps);
  norm_rotate_store_loaded<T, N>(
      a1, a2, inv_rms, w1, w2, c1, c2, s1, s2,
      head_row(q_out, k_out, a.q_out_stride, a.k_out_stride, a.q_heads, tp, h), off, half);
}

// Rows of more than 32 packs (head_dim above 512 in bf16, or scalar packs
// from misaligned tensors): one warp per row, a first loop for the sum of
// squares and a second that re-reads the row (from L1/L2) to normalize,
// rotate and store it. Each pack belongs to one lane in both loops, so the
// output may be the input itself.
template <typename T, int N>
__global__ void __launch_bounds__(256)
    qk_norm_rotary_rows_kernel(T* q_out, T* k_out, const T* q, const T* k,
                               const T* __restrict__ qw,
                               const T* __restrict__ kw,
                               const T* __restrict__ cos,
                               const T* __restrict__ sin, RotaryArgs a,
                               float eps, int64_t rows) {
  const int64_t half = a.head_dim / 2;
  const int64_t npacks = half / N;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) +
                     threadIdx.x / 32;
       row < rows; row += warps) {
    const int64_t h = row % heads;
    const TokenPos tp = token_pos(row / heads, a.seq);
    const T* x = head_row(q, k, a.q_stride, a.k_stride, a.q_heads, tp, h);
    T* o = head_row(q_out, k_out, a.q_out_stride, a.k_out_stride, a.q_heads,
                    tp, h);
    const T* w = h < a.q_heads ? qw : kw;
    const T* crow = token_row(cos, a.cos_stride, tp);
    const T* srow = token_row(sin, a.sin_stride, tp);
    float ss = 0.0f;
    for (int64_t pk = lane; pk < npacks; pk += 32) {
      float a1[N], a2[N];
      load_squares<T, N>(x, pk * N, half, a1, a2, ss);
    }
    ss = group_sum(ss, 32);
    const float inv_rms = rsqrtf(ss / static_cast<float>(a.head_dim) + eps);
    for (int64_t pk = lane; pk < npacks; pk += 32) {
      const int64_t off = pk * N;
      Vec<T, N> x1, x2;
      float a1[N], a2[N];
      load_halves(x1, x2, x, off, half);
      x1.to_float(a1);
      x2.to_float(a2);
      norm_rotate_store<T, N>(a1, a2, inv_rms, w, crow, srow, o, off, half);
    }
  }
}

constexpr int64_t kMaxGroup = 32;  // threads of one row in qk_norm_rotary_kernel

template <typename T, int N>
void launch_norm_n(const RotaryArgs& a, float eps, T* q_out, T* k_out,
                   const T* q, const T* k, const T* qw, const T* kw,
                   const T* cos, const T* sin, cudaStream_t stream) {
  const int64_t npacks = a.head_dim / 2 / N;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t rows = a.batch * a.seq * heads;
  uint32_t log2g = 0;
  while ((int64_t{1} << log2g) < npacks) {
    ++log2g;
  }
  const int64_t total = rows << log2g;
  if (npacks <= kMaxGroup && total + kFlatThreads < (int64_t{1} << 31) &&
      a.seq < (int64_t{1} << 31)) {
    const auto blocks = static_cast<unsigned>((total + kFlatThreads - 1) / kFlatThreads);
    qk_norm_rotary_kernel<T, N><<<blocks, kFlatThreads, 0, stream>>>(
        q_out, k_out, q, k, qw, kw, cos, sin, a, eps,
        static_cast<uint32_t>(npacks), log2g, static_cast<uint32_t>(rows),
        make_fastdiv(static_cast<uint32_t>(heads)),
        make_fastdiv(static_cast<uint32_t>(a.seq)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  const int64_t per_block = kThreads / 32;
  const int64_t blocks =
      std::min<int64_t>((rows + per_block - 1) / per_block, 0x7fffffff);
  qk_norm_rotary_rows_kernel<T, N><<<static_cast<unsigned>(blocks), kThreads,
                                     0, stream>>>(q_out, k_out, q, k, qw, kw,
                                                  cos, sin, a, eps, rows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_norm_dtype(const RotaryArgs& a, float eps, at::Tensor& q_out,
                       at::Tensor& k_out, const at::Tensor& q,
                       const at::Tensor& k, const at::Tensor& qw,
                       const at::Tensor& kw, const at::Tensor& cos,
                       const at::Tensor& sin, cudaStream_t stream) {
  T* qo = q_out.data_ptr<T>();
  T* ko = k_out.data_ptr<T>();
  const T* qp = q.const_data_ptr<T>();
  const T* kp = k.const_data_ptr<T>();
  const T* qwp = qw.const_data_ptr<T>();
  const T* kwp = kw.const_data_ptr<T>();
  const T* cp = cos.const_data_ptr<T>();
  const T* sp = sin.const_data_ptr<T>();
  const int n = pick_args_pack<T>(a, {qo, ko, qp, kp, qwp, kwp, cp, sp});
  constexpr int kMax = static_cast<int>(16 / sizeof(T));
  switch (n) {
    case kMax:
      launch_norm_n<T, kMax>(a, eps, qo, ko, qp, kp, qwp, kwp, cp, sp, stream);
      break;
    case kMax / 2:
      launch_norm_n<T, kMax / 2>(a, eps, qo, ko, qp, kp, qwp, kwp, cp, sp,
                                 stream);
      break;
    case kMax / 4:
      launch_norm_n<T, kMax / 4>(a, eps, qo, ko, qp, kp, qwp, kwp, cp, sp,
                                 stream);
      break;
    default:  // one element at a time (only reachable for 16-bit types)
      launch_norm_n<T, 1>(a, eps, qo, ko, qp, kp, qwp, kwp, cp, sp, stream);
      break;
  }
}

}  // namespace

KB_ROT_HIDDEN void launch_rotary(const RotaryArgs& args, at::Tensor& q_out,
                                 at::Tensor& k_out, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& cos,
                                 const at::Tensor& sin) {
  const c10::cuda::CUDAGuard device_guard(q.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (q.scalar_type()) {
    case at::kFloat:
      launch_dtype<float>(args, q_out, k_out, q, k, cos, sin, stream);
      break;
    case at::kHalf:
      launch_dtype<c10::Half>(args, q_out, k_out, q, k, cos, sin, stream);
      break;
    case at::kBFloat16:
      launch_dtype<c10::BFloat16>(args, q_out, k_out, q, k, cos, sin, stream);
      break;
    default:
      TORCH_CHECK(false, "rotary: unsupported dtype ", q.scalar_type());
  }
}

KB_ROT_HIDDEN void launch_qk_norm_rotary(
    const RotaryArgs& args, float eps, at::Tensor& q_out, at::Tensor& k_out,
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& q_weight,
    const at::Tensor& k_weight, const at::Tensor& cos, const at::Tensor& sin) {
  const c10::cuda::CUDAGuard device_guard(q.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (q.scalar_type()) {
    case at::kFloat:
      launch_norm_dtype<float>(args, eps, q_out, k_out, q, k, q_weight,
                               k_weight, cos, sin, stream);
      break;
    case at::kHalf:
      launch_norm_dtype<c10::Half>(args, eps, q_out, k_out, q, k, q_weight,
                                   k_weight, cos, sin, stream);
      break;
    case at::kBFloat16:
      launch_norm_dtype<c10::BFloat16>(args, eps, q_out, k_out, q, k,
                                       q_weight, k_weight, cos, sin, stream);
      break;
    default:
      TORCH_CHECK(false, "qk_norm_rotary: unsupported dtype ",
                  q.scalar_type());
  }
}

}  // namespace kb_rotary
