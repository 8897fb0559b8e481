//===- GeluReference.h - GELU in double, for kernel tests ------*- C++ -*-===//

#ifndef MEGATRON_TEST_UNIT_RUNTIME_GELUREFERENCE_H
#define MEGATRON_TEST_UNIT_RUNTIME_GELUREFERENCE_H

#include "runtime/cpu/Kernels.h"

#include <cmath>

/// GELU of v in double: the erf form, or the tanh approximation.
inline double geluReference(double v, megatron::runtime::cpu::GeluKind kind) {
  if (kind == megatron::runtime::cpu::GeluKind::Erf)
    return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
  return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
}

#endif // MEGATRON_TEST_UNIT_RUNTIME_GELUREFERENCE_H
