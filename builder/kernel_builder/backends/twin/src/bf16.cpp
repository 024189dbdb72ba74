// kb_twin runtime: the member functions of bfloat16::Bf16T that the open
// cpudebug header kernel_bf16.h declares but whose definitions are closed.
// Arithmetic is done in float and rounded to nearest even, once.
#include "kernel_bf16.h"

#include "fp.h"

namespace bfloat16 {

uint16_t Bf16T::FloatToBf16(const float& fVal) const {
  return static_cast<uint16_t>(kb_twin::encode_float(fVal, 8, 7, kb_twin::Round::RINT));
}
Bf16T& Bf16T::operator=(const Bf16T& fp) {
  val = fp.val;
  return *this;
}
Bf16T& Bf16T::operator=(const float& fVal) {
  val = FloatToBf16(fVal);
  return *this;
}
float Bf16T::ToFloat() const { return kb_twin::bf16_bits_to_float(val); }
Bf16T::operator float() const { return ToFloat(); }
Bf16T Bf16T::operator+(const Bf16T fp) const { return Bf16T(ToFloat() + fp.ToFloat()); }
Bf16T Bf16T::operator-(const Bf16T fp) const { return Bf16T(ToFloat() - fp.ToFloat()); }
Bf16T Bf16T::operator-() const {
  Bf16T r(*this);
  r.val ^= 0x8000;
  return r;
}
Bf16T Bf16T::operator+=(const Bf16T fp) {
  val = FloatToBf16(ToFloat() + fp.ToFloat());
  return *this;
}
Bf16T Bf16T::operator-=(const Bf16T fp) {
  val = FloatToBf16(ToFloat() - fp.ToFloat());
  return *this;
}
// mode 0 adds, anything else subtracts (the two uses of Bf16Compute).
uint16_t Bf16T::Bf16Compute(uint16_t fp1, uint16_t fp2, uint16_t mode) const {
  const float a = kb_twin::bf16_bits_to_float(fp1);
  const float b = kb_twin::bf16_bits_to_float(fp2);
  return FloatToBf16(mode == 0 ? a + b : a - b);
}
uint16_t Bf16T::Bf16Add(uint16_t fp1, uint16_t fp2) const { return Bf16Compute(fp1, fp2, 0); }
uint16_t Bf16T::Bf16Sub(uint16_t fp1, uint16_t fp2) const { return Bf16Compute(fp1, fp2, 1); }

}  // namespace bfloat16
