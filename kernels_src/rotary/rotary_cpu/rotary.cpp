// CPU implementation of the rotary position embedding: tokens (batch, seq)
// are split across threads with at::parallel_for; each token's cos/sin row
// is read once and applied to every head of q and k, in float32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <vector>

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

// One head row. Reads x[i] and x[i + half] before writing either, so out may
// be x itself.
template <typename T>
inline void rotate_row(T* out, const T* x, const float* c, const float* s,
                       int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = static_cast<float>(x[i]);
    const float x2 = static_cast<float>(x[i + half]);
    out[i] = static_cast<T>(x1 * c[i] - x2 * s[i]);
    out[i + half] = static_cast<T>(x2 * c[i + half] + x1 * s[i + half]);
  }
}

template <typename T>
void rotary_typed(const RotaryArgs& a, T* q_out, T* k_out, const T* q,
                  const T* k, const T* cos, const T* sin) {
  const int64_t d = a.head_dim;
  const int64_t half = d / 2;
  const int64_t tokens = a.batch * a.seq;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t grain =
      std::max<int64_t>(1, 32768 / std::max<int64_t>(heads * d, 1));
  at::parallel_for(0, tokens, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> cs(static_cast<size_t>(2 * d));
    float* c = cs.data();
    float* s = cs.data() + d;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / a.seq;
      const int64_t p = t % a.seq;
      const T* crow = cos + b * a.cos_stride[0] + p * a.cos_stride[1];
      const T* srow = sin + b * a.sin_stride[0] + p * a.sin_stride[1];
      for (int64_t i = 0; i < d; ++i) {
        c[i] = static_cast<float>(crow[i]);
        s[i] = static_cast<float>(srow[i]);
      }
      for (int64_t h = 0; h < a.q_heads; ++h) {
        rotate_row(q_out + b * a.q_out_stride[0] + h * a.q_out_stride[1] +
                       p * a.q_out_stride[2],
                   q + b * a.q_stride[0] + h * a.q_stride[1] +
                       p * a.q_stride[2],
                   c, s, half);
      }
      for (int64_t h = 0; h < a.k_heads; ++h) {
        rotate_row(k_out + b * a.k_out_stride[0] + h * a.k_out_stride[1] +
                       p * a.k_out_stride[2],
                   k + b * a.k_stride[0] + h * a.k_stride[1] +
                       p * a.k_stride[2],
                   c, s, half);
      }
    }
  });
}

template <typename T>
void launch_typed(const RotaryArgs& a, at::Tensor& q_out, at::Tensor& k_out,
                  const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& cos, const at::Tensor& sin) {
  rotary_typed<T>(a, q_out.data_ptr<T>(), k_out.data_ptr<T>(),
                  q.const_data_ptr<T>(), k.const_data_ptr<T>(),
                  cos.const_data_ptr<T>(), sin.const_data_ptr<T>());
}

}  // namespace

KB_ROT_HIDDEN void launch_rotary(const RotaryArgs& args, at::Tensor& q_out,
                                 at::Tensor& k_out, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& cos,
                                 const at::Tensor& sin) {
  switch (q.scalar_type()) {
    case at::kFloat:
      launch_typed<float>(args, q_out, k_out, q, k, cos, sin);
      break;
    case at::kHalf:
      launch_typed<c10::Half>(args, q_out, k_out, q, k, cos, sin);
      break;
    case at::kBFloat16:
      launch_typed<c10::BFloat16>(args, q_out, k_out, q, k, cos, sin);
      break;
    default:
      TORCH_CHECK(false, "rotary: unsupported dtype ", q.scalar_type());
  }
}

}  // namespace kb_rotary
