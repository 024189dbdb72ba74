// CPU implementation of the activation kernels: rows are split across threads
// with at::parallel_for; every element is computed in float32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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

template <Activation A>
inline float activate(float x) {
  if constexpr (A == Activation::kSilu) {
    return x / (1.0f + std::exp(-x));
  } else if constexpr (A == Activation::kGelu) {
    // 1 + erf(x / sqrt 2) == erfc(-x / sqrt 2), without the cancellation
    // for negative x.
    return 0.5f * x * std::erfc(x * -0.70710678118654752f);
  } else if constexpr (A == Activation::kGeluTanh) {
    // 0.5 x (1 + tanh(z)) == x / (1 + exp(-2 z)): same value, no cancellation
    // for negative x, and cheaper than tanh.
    const float z = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return x / (1.0f + std::exp(-2.0f * z));
  } else if constexpr (A == Activation::kGeluFast) {
    const float z = 0.7978845608f * x * (1.0f + 0.044715f * x * x);
    return x / (1.0f + std::exp(-2.0f * z));
  } else {
    return x / (1.0f + std::exp(-1.702f * x));
  }
}

// Rows per task so that each task touches at least ~32K elements.
inline int64_t grain_for(int64_t cols) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1));
}

template <typename T, Activation A>
void act_and_mul_rows(T* out, const T* in, int64_t rows, int64_t d,
                      int64_t in_stride, int64_t out_stride) {
  at::parallel_for(0, rows, grain_for(2 * d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* x = in + r * in_stride;
      const T* y = x + d;
      T* o = out + r * out_stride;
      for (int64_t i = 0; i < d; ++i) {
        const float a = static_cast<float>(x[i]);
        const float b = static_cast<float>(y[i]);
        o[i] = static_cast<T>(activate<A>(a) * b);
      }
    }
  });
}

template <typename T, Activation A>
void act_rows(T* out, const T* in, int64_t rows, int64_t d, int64_t in_stride,
              int64_t out_stride) {
  if (rows > 1 && in_stride == d && out_stride == d) {
    // Both fully contiguous: treat as one flat array split into chunks.
    d = rows * d;
    rows = 1;
  }
  if (rows == 1) {
    at::parallel_for(0, d, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        out[i] = static_cast<T>(activate<A>(static_cast<float>(in[i])));
      }
    });
    return;
  }
  at::parallel_for(0, rows, grain_for(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* x = in + r * in_stride;
      T* o = out + r * out_stride;
      for (int64_t i = 0; i < d; ++i) {
        o[i] = static_cast<T>(activate<A>(static_cast<float>(x[i])));
      }
    }
  });
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
  dispatch_dtype(input.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_act(act, [&](auto a) {
      act_and_mul_rows<T, decltype(a)::value>(
          out.data_ptr<T>(), input.const_data_ptr<T>(), rows, d, in_stride,
          out_stride);
    });
  });
}

KB_ACT_HIDDEN void launch_act(Activation act, at::Tensor& out,
                              const at::Tensor& input, int64_t rows, int64_t d,
                              int64_t in_stride, int64_t out_stride) {
  dispatch_dtype(input.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_act(act, [&](auto a) {
      act_rows<T, decltype(a)::value>(out.data_ptr<T>(),
                                      input.const_data_ptr<T>(), rows, d,
                                      in_stride, out_stride);
    });
  });
}

}  // namespace kb_activation
