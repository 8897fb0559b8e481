// RUN: megatron-opt %s -split-input-file -megatron-fuse-bias-gelu | FileCheck %s

// CHECK-LABEL: func.func @epilogue
// CHECK: %[[Y:.*]] = megatron.linear %arg0, %arg1, %arg2 gelu tanh
// CHECK-NOT: megatron.gelu
// CHECK: return %[[Y]]
func.func @epilogue(%x: tensor<?x8xf32>, %w: tensor<32x8xf32>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  %y = megatron.linear %x, %w, %b : tensor<?x8xf32>, tensor<32x8xf32>, tensor<32xf32> -> tensor<?x32xf32>
  %g = megatron.gelu tanh %y : tensor<?x32xf32>
  return %g : tensor<?x32xf32>
}

// -----

// Negative: the pre-activation is needed too.
// CHECK-LABEL: func.func @both_needed
// CHECK: megatron.linear %arg0, %arg1, %arg2 :
// CHECK: megatron.gelu erf
func.func @both_needed(%x: tensor<?x8xf32>, %w: tensor<32x8xf32>, %b: tensor<32xf32>) -> (tensor<?x32xf32>, tensor<?x32xf32>) {
  %y = megatron.linear %x, %w, %b : tensor<?x8xf32>, tensor<32x8xf32>, tensor<32xf32> -> tensor<?x32xf32>
  %g = megatron.gelu erf %y : tensor<?x32xf32>
  return %g, %y : tensor<?x32xf32>, tensor<?x32xf32>
}
