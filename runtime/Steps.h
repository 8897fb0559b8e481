//===- Steps.h - what a step's parameters say --------------------*- C++ -*-===//
//
// Internal to the runtime: the session and the CUDA executor both read
// these off an artifact's steps.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_STEPS_H
#define MEGATRON_RUNTIME_STEPS_H

#include "runtime/schema/artifact_generated.h"

namespace megatron::runtime {

/// Whether a step is a linear (alone or fused with the residual and
/// LayerNorm) that quantizes its input to int8: its second parameter.
inline bool quantizesInput(const artifact::Step &step) {
  return (step.kind() == artifact::StepKind::Linear ||
          step.kind() == artifact::StepKind::LinearAddLayerNorm) &&
         step.ints()->Get(1) != 0;
}

/// Where a slice step starts along its dimension of `extent`: its second
/// parameter, counted from the end when negative (-1: the last position).
inline int64_t sliceStart(const artifact::Step &step, int64_t extent) {
  int64_t start = step.ints()->Get(1);
  return start < 0 ? extent + start : start;
}

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_STEPS_H
