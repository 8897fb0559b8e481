// RUN: megatron-opt %s -split-input-file -megatron-fuse-residual-layer-norm | FileCheck %s

// Projection + residual + LayerNorm: one op; the sum stays the residual.
// CHECK-LABEL: func.func @projection
// CHECK: %[[SUM:.*]], %[[NORM:.*]] = megatron.linear_add_layer_norm %arg0, %arg1 bias %arg2 residual %arg3 norm %arg4, %arg5 {epsilon = 1.000000e-05 : f64}
// CHECK: return %[[SUM]], %[[NORM]]
func.func @projection(%x: tensor<?x8xf32>, %w: tensor<8x8xf32>, %b: tensor<8xf32>, %r: tensor<?x8xf32>,
                      %g: tensor<8xf32>, %beta: tensor<8xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %y = megatron.linear %x, %w, %b : tensor<?x8xf32>, tensor<8x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %s = megatron.add %r, %y : tensor<?x8xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %n = megatron.layer_norm %s, %g, %beta {epsilon = 1.0e-05 : f64} : tensor<?x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  return %s, %n : tensor<?x8xf32>, tensor<?x8xf32>
}

// -----

// Two activations (the embeddings): add + LayerNorm.
// CHECK-LABEL: func.func @sum
// CHECK: %{{.*}}, %[[NORM:.*]] = megatron.add_layer_norm %arg0, %arg1, %arg2, %arg3
// CHECK: return %[[NORM]]
func.func @sum(%a: tensor<?x8xf32>, %b: tensor<?x8xf32>, %g: tensor<8xf32>, %beta: tensor<8xf32>) -> tensor<?x8xf32> {
  %s = megatron.add %a, %b : tensor<?x8xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %n = megatron.layer_norm %s, %g, %beta {epsilon = 1.0e-05 : f64} : tensor<?x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  return %n : tensor<?x8xf32>
}

// -----

// Negatives: a broadcast add (a bias) is no residual; a LayerNorm of
// something else stays.
// CHECK-LABEL: func.func @bias_add
// CHECK: megatron.add
// CHECK: megatron.layer_norm
// CHECK-NOT: add_layer_norm
func.func @bias_add(%a: tensor<?x8xf32>, %b: tensor<8xf32>, %g: tensor<8xf32>, %beta: tensor<8xf32>) -> tensor<?x8xf32> {
  %s = megatron.add %a, %b : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %n = megatron.layer_norm %s, %g, %beta {epsilon = 1.0e-05 : f64} : tensor<?x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  return %n : tensor<?x8xf32>
}

// -----

// Negative for the GEMM form: the linear's own output is also used, so
// only the add joins the LayerNorm.
// CHECK-LABEL: func.func @linear_used_twice
// CHECK: %[[Y:.*]] = megatron.linear
// CHECK: megatron.add_layer_norm %arg3, %[[Y]]
// CHECK-NOT: linear_add_layer_norm
func.func @linear_used_twice(%x: tensor<?x8xf32>, %w: tensor<8x8xf32>, %b: tensor<8xf32>, %r: tensor<?x8xf32>,
                             %g: tensor<8xf32>, %beta: tensor<8xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %y = megatron.linear %x, %w, %b : tensor<?x8xf32>, tensor<8x8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %s = megatron.add %r, %y : tensor<?x8xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
  %n = megatron.layer_norm %s, %g, %beta {epsilon = 1.0e-05 : f64} : tensor<?x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x8xf32>
  return %n, %y : tensor<?x8xf32>, tensor<?x8xf32>
}
