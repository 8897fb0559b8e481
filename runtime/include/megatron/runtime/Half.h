//===- Half.h - f16 / bf16 <-> f32 conversions -----------------*- C++ -*-===//
//
// Header-only so that both the compiler (which stores weights in these
// types) and the runtime (which widens them) use the same rounding.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_HALF_H
#define MEGATRON_RUNTIME_HALF_H

#include <cmath>
#include <cstdint>
#include <cstring>

namespace megatron::runtime {

inline float halfToFloat(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(static_cast<float>(mantissa), -24); // subnormal
  else if (exponent == 31)
    magnitude = mantissa ? NAN : INFINITY;
  else
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  return sign ? -magnitude : magnitude;
}

inline float bfloat16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

/// Round to nearest, ties to even; overflow gives infinity, NaN stays NaN.
inline uint16_t floatToHalf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  float magnitude = std::fabs(f);
  if (std::isnan(f))
    return sign | 0x7e00;
  if (magnitude >= 65520.0f) // rounds past the largest half, 65504
    return sign | 0x7c00;
  if (magnitude < 6.103515625e-05f) { // subnormal: a multiple of 2^-24
    float scaled = std::nearbyint(magnitude * 16777216.0f);
    return sign | static_cast<uint16_t>(scaled);
  }
  uint32_t m;
  std::memcpy(&m, &magnitude, sizeof(m));
  // Rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10.
  uint32_t rounded = m + 0xfff + ((m >> 13) & 1);
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

/// Rounded to nearest even; NaN stays NaN. NaN is told by its bits, not
/// std::isnan, so that the runtime's -ffast-math kernels can call this too.
inline uint16_t floatToBFloat16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_HALF_H
