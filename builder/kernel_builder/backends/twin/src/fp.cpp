// kb_twin runtime: float formats. One encoder for f32/f16/bf16 keeps every
// narrowing conversion exact-then-rounded-once (no double rounding through
// float), which is what the vconv instructions do.
#include "fp.h"

#include <cmath>
#include <cstring>

namespace kb_twin {

namespace {
// Applies rounding mode r to the integer significand q with fraction rem.
uint64_t round_sig(uint64_t q, double rem, bool neg, Round r) {
  switch (r) {
    case Round::RINT: case Round::NONE:
      return (rem > 0.5 || (rem == 0.5 && (q & 1))) ? q + 1 : q;
    case Round::AWAY: return rem >= 0.5 ? q + 1 : q;
    case Round::TRUNC: return q;
    case Round::FLOOR: return (neg && rem > 0) ? q + 1 : q;
    case Round::CEIL: return (!neg && rem > 0) ? q + 1 : q;
    case Round::ODD: return rem > 0 ? (q | 1) : q;
  }
  return q;
}

// Value past the largest finite: inf, or the largest finite for the modes
// that round toward zero on that side (IEEE overflow rules).
uint32_t overflow(bool neg, int ebits, int mbits, Round r) {
  const uint32_t inf = ((1u << ebits) - 1) << mbits;
  const bool to_max = r == Round::TRUNC || r == Round::ODD || (r == Round::FLOOR && !neg) ||
                      (r == Round::CEIL && neg);
  const uint32_t mag = to_max ? inf - 1 : inf;
  return (neg ? 1u << (ebits + mbits) : 0u) | mag;
}
}  // namespace

uint32_t encode_float(double x, int ebits, int mbits, Round r) {
  const bool neg = std::signbit(x);
  const uint32_t sign = neg ? 1u << (ebits + mbits) : 0u;
  const uint32_t exp_all = (1u << ebits) - 1;
  if (std::isnan(x)) return sign | (exp_all << mbits) | (1u << (mbits - 1));
  if (std::isinf(x)) return sign | (exp_all << mbits);
  const double a = std::fabs(x);
  if (a == 0) return sign;
  const int bias = (1 << (ebits - 1)) - 1;
  int e2 = 0;
  std::frexp(a, &e2);
  int e = e2 - 1;                      // a = 1.f * 2^e
  if (e < 1 - bias) e = 1 - bias;      // subnormal range: fixed exponent
  const double scaled = std::ldexp(a, mbits - e);  // exact: power-of-two scaling
  uint64_t q = static_cast<uint64_t>(std::floor(scaled));
  q = round_sig(q, scaled - std::floor(scaled), neg, r);
  if (q >> (mbits + 1)) {              // rounding carried into a new binade
    q >>= 1;
    ++e;
  }
  if (e > bias) return overflow(neg, ebits, mbits, r);
  if (q < (1ull << mbits)) return sign | static_cast<uint32_t>(q);  // subnormal
  const uint32_t field = static_cast<uint32_t>(e + bias);
  return sign | (field << mbits) | static_cast<uint32_t>(q - (1ull << mbits));
}

float half_bits_to_float(uint16_t h) {
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  float v;
  if (e == 0) v = std::ldexp(static_cast<float>(m), -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = std::ldexp(static_cast<float>(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}

float bf16_bits_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

double load(DType t, const void* p) {
  switch (t) {
    case DType::F32: { float f; std::memcpy(&f, p, 4); return f; }
    case DType::F16: { uint16_t h; std::memcpy(&h, p, 2); return half_bits_to_float(h); }
    case DType::BF16: { uint16_t h; std::memcpy(&h, p, 2); return bf16_bits_to_float(h); }
    case DType::S16: return *static_cast<const int16_t*>(p);
    case DType::U16: return *static_cast<const uint16_t*>(p);
    case DType::S32: return *static_cast<const int32_t*>(p);
    case DType::U32: return *static_cast<const uint32_t*>(p);
    case DType::S8: return *static_cast<const int8_t*>(p);
    case DType::U8: return *static_cast<const uint8_t*>(p);
    case DType::S64: return static_cast<double>(*static_cast<const int64_t*>(p));
    case DType::U64: return static_cast<double>(*static_cast<const uint64_t*>(p));
    default: return NAN;
  }
}

void store(DType t, void* p, double v, Round r) {
  switch (t) {
    case DType::F32: { uint32_t u = encode_float(v, 8, 23, r); std::memcpy(p, &u, 4); return; }
    case DType::F16: { uint16_t u = encode_float(v, 5, 10, r); std::memcpy(p, &u, 2); return; }
    case DType::BF16: { uint16_t u = encode_float(v, 8, 7, r); std::memcpy(p, &u, 2); return; }
    case DType::S16: *static_cast<int16_t*>(p) = static_cast<int16_t>(static_cast<int64_t>(v)); return;
    case DType::U16: *static_cast<uint16_t*>(p) = static_cast<uint16_t>(static_cast<int64_t>(v)); return;
    case DType::S32: *static_cast<int32_t*>(p) = static_cast<int32_t>(static_cast<int64_t>(v)); return;
    case DType::U32: *static_cast<uint32_t*>(p) = static_cast<uint32_t>(static_cast<int64_t>(v)); return;
    case DType::S8: *static_cast<int8_t*>(p) = static_cast<int8_t>(static_cast<int64_t>(v)); return;
    case DType::U8: *static_cast<uint8_t*>(p) = static_cast<uint8_t>(static_cast<int64_t>(v)); return;
    case DType::S64: *static_cast<int64_t*>(p) = static_cast<int64_t>(v); return;
    case DType::U64: *static_cast<uint64_t*>(p) = static_cast<uint64_t>(v); return;
    default: return;
  }
}

}  // namespace kb_twin
