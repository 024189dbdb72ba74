// CUDA implementation of the activation kernels.
//
// Memory-bound elementwise kernels: every thread moves up to 16 bytes per
// load/store and issues all loads of a step (kUnroll packs, twice that when
// gated) before any math; one tile per block (no persistent grid: the
// hardware block scheduler balances the tail). The vector width is chosen at
// launch from the alignment of the pointers, row strides and row length (16,
// 8, 4 bytes, or one element), so any shape and any (element-aligned) pointer works; fully contiguous unary
// ops run as one flat array with a scalar tail. Math is done in float32.
#include <ATen/ATen.h>
// c10/cuda/CUDAStream.h gives the same current stream as
// at::cuda::getCurrentCUDAStream() without ATen/cuda/CUDAContext.h, which
// needs the cuBLAS/cuSPARSE headers on the include path.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
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

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

// float -> T, rounding to nearest even. For bfloat16 this is the hardware
// conversion (one cvt.rn.bf16.f32): c10::BFloat16's own constructor rounds in
// software (~6 integer instructions an element), which left the bf16 kernels
// instruction-bound on an H200 (silu_and_mul 8192x14336: bf16 75 % of the
// copy bandwidth against fp16 98 %, the same bytes).
template <typename T>
__device__ __forceinline__ T to_storage(float v) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return c10::BFloat16(__float2bfloat16_rn(v));
  } else {
    return static_cast<T>(v);
  }
}

// T is the storage type: float32 results keep the accurate (and slower) erf
// GELU, 16-bit results take the fast one (see below).
template <Activation A, typename T>
__device__ __forceinline__ float activate(float x) {
  if constexpr (A == Activation::kSilu) {
    return x / (1.0f + expf(-x));
  } else if constexpr (A == Activation::kGelu) {
    if constexpr (std::is_same_v<T, float>) {
      // 1 + erf(x / sqrt 2) == erfc(-x / sqrt 2), without the cancellation
      // for negative x: float32 results stay within a few ulp of the exact
      // value (1 + erff loses up to ~1e-7 absolute, i.e. most of the
      // relative accuracy of small negative-x results).
      return 0.5f * x * erfcf(x * -0.70710678118654752f);
    } else {
      // torch's formula. erff is much cheaper than erfcf on the GPU (erfcf
      // made the 16-bit gelu/gelu_and_mul compute-bound). Its cancellation
      // error for negative x is at most ~1e-7 absolute (worst near
      // x = -5.5; below that erff rounds to -1 and gives -0 where the exact
      // value is under 8e-8): the same as torch's own 16-bit gelu, and below
      // a float16/bfloat16 ulp for results of magnitude above ~1e-4.
      // -inf still gives -inf * 0 = NaN and +inf gives +inf, as torch does.
      return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
  } else if constexpr (A == Activation::kGeluTanh) {
    // 0.5 x (1 + tanh(z)) == x / (1 + exp(-2 z)): same value, no cancellation
    // for negative x, and cheaper than tanh.
    const float z = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-2.0f * z));
  } else if constexpr (A == Activation::kGeluFast) {
    const float z = 0.7978845608f * x * (1.0f + 0.044715f * x * x);
    return x / (1.0f + expf(-2.0f * z));
  } else {
    return x / (1.0f + expf(-1.702f * x));
  }
}

// Packs each thread moves per step: all of a step's loads are issued before
// any math or store, so every thread has U (gated: 2U) independent 16-byte
// loads in flight (one load at a time left the bf16 gelu_and_mul ~22% under
// the copy bandwidth on an H100).
constexpr int kUnroll = 2;
constexpr int kBlockThreads = 256;

// Rows x packs: a block is blockDim.y rows by a chunk of blockDim.x * U packs
// of the row (chunks along gridDim.y). One tile per block; the loops only
// matter for grids larger than the launch limits.
template <typename T, Activation A, int N, int U, bool kGated>
__global__ void __launch_bounds__(kBlockThreads)
    act_rows_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t rows,
                    int64_t d, int64_t in_stride, int64_t out_stride) {
  const int64_t npacks = d / N;  // launch guarantees d % N == 0
  const int64_t chunk = static_cast<int64_t>(blockDim.x) * U;
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
       row < rows; row += row_step) {
    const T* x = in + row * in_stride;
    T* o = out + row * out_stride;
    for (int64_t c0 = static_cast<int64_t>(blockIdx.y) * chunk + threadIdx.x;
         c0 < npacks; c0 += static_cast<int64_t>(gridDim.y) * chunk) {
      Pack<T, N> a[U];
      Pack<T, N> b[kGated ? U : 1];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t i = c0 + static_cast<int64_t>(u) * blockDim.x;
        if (i < npacks) {
          a[u] = load_pack<T, N>(x + i * N);
          if constexpr (kGated) {
            b[u] = load_pack<T, N>(x + d + i * N);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t i = c0 + static_cast<int64_t>(u) * blockDim.x;
        if (i < npacks) {
          Pack<T, N> r;
#pragma unroll
          for (int j = 0; j < N; ++j) {
            float v = activate<A, T>(static_cast<float>(a[u].v[j]));
            if constexpr (kGated) {
              v *= static_cast<float>(b[u].v[j]);
            }
            r.v[j] = to_storage<T>(v);
          }
          store_pack<T, N>(o + i * N, r);
        }
      }
    }
  }
}

// Contiguous unary op over n elements: N-element packs plus a scalar tail.
// Each block moves one tile of kBlockThreads * U packs (grid-stride only past
// the launch limit), loads first.
template <typename T, Activation A, int N, int U>
__global__ void __launch_bounds__(kBlockThreads)
    act_flat_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t n) {
  const int64_t npacks = n / N;
  const int64_t tile = static_cast<int64_t>(blockDim.x) * U;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * tile + threadIdx.x;
       base < npacks; base += static_cast<int64_t>(gridDim.x) * tile) {
    Pack<T, N> a[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * blockDim.x;
      if (i < npacks) {
        a[u] = load_pack<T, N>(in + i * N);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * blockDim.x;
      if (i < npacks) {
        Pack<T, N> r;
#pragma unroll
        for (int j = 0; j < N; ++j) {
          r.v[j] = to_storage<T>(activate<A, T>(static_cast<float>(a[u].v[j])));
        }
        store_pack<T, N>(out + i * N, r);
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
constexpr int64_t kMaxGridY = 65535;

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
  const dim3 block(static_cast<unsigned>(tx), static_cast<unsigned>(ty));
  const dim3 grid(
      static_cast<unsigned>(std::min<int64_t>((rows + ty - 1) / ty, kMaxGridX)),
      static_cast<unsigned>(std::min<int64_t>(chunks, kMaxGridY)));
  act_rows_kernel<T, A, N, U, kGated><<<grid, block, 0, stream>>>(
      out, in, rows, d, in_stride, out_stride);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, Activation A, bool kGated>
void launch_rows(T* out, const T* in, int64_t rows, int64_t d,
                 int64_t in_stride, int64_t out_stride, cudaStream_t stream) {
  // The gate half starts d elements into the row, so d must be a multiple of
  // the pack too (checked through the extents).
  const int n = pick_pack<T>({out, in}, {d, in_stride, out_stride});
  constexpr int kMax = static_cast<int>(16 / sizeof(T));
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
  constexpr int U = kUnroll;
  const bool vec = aligned(out, 16) && aligned(in, 16);
  const int64_t per_block = static_cast<int64_t>(kBlockThreads) * U * (vec ? kPack : 1);
  const dim3 grid(static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((n + per_block - 1) / per_block, kMaxGridX))));
  if (vec) {
    act_flat_kernel<T, A, kPack, U><<<grid, kBlockThreads, 0, stream>>>(out, in, n);
  } else {
    act_flat_kernel<T, A, 1, U><<<grid, kBlockThreads, 0, stream>>>(out, in, n);
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
