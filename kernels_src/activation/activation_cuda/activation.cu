// CUDA implementation of the activation kernels.
//
// Memory-bound elementwise kernels: every thread moves up to 16 bytes per
// load/store. The vector width is chosen at launch from the alignment of the
// pointers, row strides and row length (16, 8, 4 bytes, or one element), so
// any shape and any (element-aligned) pointer works; fully contiguous unary
// ops run as one flat array with a scalar tail. Math is done in float32.
#include <ATen/ATen.h>
// c10/cuda/CUDAStream.h gives the same current stream as
// at::cuda::getCurrentCUDAStream() without ATen/cuda/CUDAContext.h, which
// needs the cuBLAS/cuSPARSE headers on the include path.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
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

// Rows are processed by blockDim.y rows of blockDim.x threads; each row of a
// block walks its row in steps of blockDim.x packs. Grid-stride over rows.
template <typename T, Activation A, int N, bool kGated>
__global__ void __launch_bounds__(1024)
    act_rows_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t rows,
                    int64_t d, int64_t in_stride, int64_t out_stride) {
  const int64_t npacks = d / N;  // launch guarantees d % N == 0
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
       row < rows; row += row_step) {
    const T* x = in + row * in_stride;
    T* o = out + row * out_stride;
    for (int64_t i = threadIdx.x; i < npacks; i += blockDim.x) {
      const Pack<T, N> a = load_pack<T, N>(x + i * N);
      Pack<T, N> r;
      if constexpr (kGated) {
        const Pack<T, N> b = load_pack<T, N>(x + d + i * N);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          r.v[j] = static_cast<T>(activate<A, T>(static_cast<float>(a.v[j])) *
                                  static_cast<float>(b.v[j]));
        }
      } else {
#pragma unroll
        for (int j = 0; j < N; ++j) {
          r.v[j] = static_cast<T>(activate<A, T>(static_cast<float>(a.v[j])));
        }
      }
      store_pack<T, N>(o + i * N, r);
    }
  }
}

// Contiguous unary op over n elements: N-element packs plus a scalar tail.
constexpr int kFlatThreads = 256;

template <typename T, Activation A, int N>
__global__ void __launch_bounds__(kFlatThreads)
    act_flat_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t n) {
  const int64_t npacks = n / N;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = tid; i < npacks; i += step) {
    const Pack<T, N> a = load_pack<T, N>(in + i * N);
    Pack<T, N> r;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      r.v[j] = static_cast<T>(activate<A, T>(static_cast<float>(a.v[j])));
    }
    store_pack<T, N>(out + i * N, r);
  }
  for (int64_t i = npacks * N + tid; i < n; i += step) {
    out[i] = static_cast<T>(activate<A, T>(static_cast<float>(in[i])));
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

// Streaming multiprocessors of the current device (the caller holds a
// CUDAGuard for the input's device).
int sm_count() {
  // Cached per device: launches (and CUDA graph captures) make no extra
  // runtime calls after the first.
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  if (device >= 0 && device < kMaxDevices) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) {
      return cached;
    }
  }
  int count = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  count = count > 0 ? count : 1;
  if (device >= 0 && device < kMaxDevices) {
    cache[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

template <typename T, Activation A, bool kGated, int N>
void launch_rows_n(T* out, const T* in, int64_t rows, int64_t d,
                   int64_t in_stride, int64_t out_stride,
                   cudaStream_t stream) {
  const int64_t npacks = d / N;
  // Threads along a row: enough to cover it in as few, evenly filled steps
  // as possible (at most 1024 threads); short rows share a block.
  const int64_t steps = (npacks + 1023) / 1024;
  int64_t tx = (npacks + steps - 1) / steps;
  if (tx >= 32) {
    tx = (tx + 31) / 32 * 32;
  } else {
    int64_t p = 1;
    while (p < tx) {
      p *= 2;
    }
    tx = p;
  }
  const int64_t ty = std::max<int64_t>(1, 256 / tx);
  const dim3 block(static_cast<unsigned>(tx), static_cast<unsigned>(ty));
  const int64_t blocks_needed = (rows + ty - 1) / ty;
  const int64_t max_blocks = static_cast<int64_t>(sm_count()) * 64;
  const dim3 grid(static_cast<unsigned>(std::min(blocks_needed, max_blocks)));
  act_rows_kernel<T, A, N, kGated><<<grid, block, 0, stream>>>(
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
  constexpr int kThreads = kFlatThreads;
  const bool vec = aligned(out, 16) && aligned(in, 16);
  const int64_t work = vec ? (n + kPack - 1) / kPack : n;
  const int64_t blocks_needed = (work + kThreads - 1) / kThreads;
  const int64_t max_blocks = static_cast<int64_t>(sm_count()) * 128;
  const dim3 grid(
      static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks_needed, max_blocks))));
  if (vec) {
    act_flat_kernel<T, A, kPack><<<grid, kThreads, 0, stream>>>(out, in, n);
  } else {
    act_flat_kernel<T, A, 1><<<grid, kThreads, 0, stream>>>(out, in, n);
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
