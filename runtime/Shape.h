//===- Shape.h - a buffer's evaluated shape ---------------------*- C++ -*-===//
//
// Internal to the runtime: the session checks steps' shapes, the CUDA
// executor turns them into launches.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_SHAPE_H
#define MEGATRON_RUNTIME_SHAPE_H

#include <cstdint>
#include <vector>

namespace megatron::runtime {

using Shape = std::vector<int64_t>;

inline int64_t elements(const Shape &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// Product of `shape[begin, end)`.
inline int64_t span(const Shape &shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i)
    n *= shape[i];
  return n;
}

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_SHAPE_H
