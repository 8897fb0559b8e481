//===- StepSignature.h - operands and parameters of each step --*- C++ -*-===//
//
// Shared by the plan dialect's verifier (compiler side) and the runtime's
// artifact checks, so a step the compiler accepts is one the runtime runs.
// Kinds are numbered as StepKind in runtime/schema/artifact.fbs.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_STEPSIGNATURE_H
#define MEGATRON_RUNTIME_STEPSIGNATURE_H

#include <optional>

namespace megatron::runtime {

struct StepSignature {
  const char *name;
  unsigned minInputs, maxInputs;
  unsigned ints, floats; ///< static parameters
  unsigned outputs = 1;  ///< buffers written (fused sum + norm: 2)
};

inline std::optional<StepSignature> stepSignature(unsigned kind) {
  static constexpr StepSignature table[] = {
      {"embedding", 2, 3, 2, 0},       {"positions", 1, 1, 0, 0},
      {"add", 2, 2, 0, 0},             {"linear", 2, 4, 2, 0},
      {"matmul", 2, 2, 1, 0},          {"layer_norm", 3, 3, 0, 1},
      {"gelu", 1, 1, 1, 0},            {"tanh", 1, 1, 0, 0},
      {"scale", 1, 1, 0, 1},           {"softmax", 1, 1, 0, 0},
      {"attention_mask", 1, 2, 1, 0},  {"swap_middle_axes", 1, 1, 0, 0},
      {"slice", 1, 1, 2, 0},           {"concat", 1, ~0u, 1, 0},
      {"copy", 1, 1, 0, 0},            {"all_reduce", 1, 1, 1, 0},
      {"all_gather", 1, 1, 1, 0},      {"cache_write", 1, 1, 0, 0},
      {"add_layer_norm", 4, 4, 0, 1, 2},
      {"linear_add_layer_norm", 5, 7, 2, 1, 2},
      {"attention", 1, 4, 4, 1},
  };
  if (kind >= sizeof(table) / sizeof(table[0]))
    return std::nullopt;
  return table[kind];
}

/// The operand of a step of `kind` that may be an int8 weight, which is then
/// followed by its f32 scales ([rows, groups]): an embedding's table, a
/// linear's weight. -1 for kinds without one.
inline int quantizableOperand(unsigned kind) {
  switch (kind) {
  case 0: // embedding
    return 0;
  case 3:  // linear
  case 19: // linear_add_layer_norm
    return 1;
  default:
    return -1;
  }
}

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_STEPSIGNATURE_H
