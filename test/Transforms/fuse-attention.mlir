// RUN: megatron-opt %s -split-input-file -megatron-fuse-attention | FileCheck %s

// Q, K, V slices of one tensor, split into heads, scaled and masked scores,
// softmax, A V, heads merged: one op.
// CHECK-LABEL: func.func @fused
// CHECK: %[[A:.*]] = megatron.attention %arg0 mask %arg1 heads 2 scale 5.000000e-01 {causal} : tensor<?x?x24xf32>, tensor<?x?xi64> -> tensor<?x?x8xf32>
// CHECK-NEXT: return %[[A]]
func.func @fused(%qkv: tensor<?x?x24xf32>, %mask: tensor<?x?xi64>) -> tensor<?x?x8xf32> {
  %q = megatron.slice %qkv dim 2 start 0 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %k = megatron.slice %qkv dim 2 start 8 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %v = megatron.slice %qkv dim 2 start 16 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %qh = megatron.split_heads %q, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %kh = megatron.split_heads %k, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %vh = megatron.split_heads %v, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
  %sc = megatron.scale %s, 5.000000e-01 : tensor<?x2x?x?xf32>
  %m = megatron.attention_mask %sc, %mask {causal} : tensor<?x2x?x?xf32>, tensor<?x?xi64> -> tensor<?x2x?x?xf32>
  %p = megatron.softmax %m : tensor<?x2x?x?xf32>
  %c = megatron.matmul %p, %vh : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
  %o = megatron.merge_heads %c : tensor<?x2x?x4xf32> -> tensor<?x?x8xf32>
  return %o : tensor<?x?x8xf32>
}

// -----

// Negative: the probabilities are also returned, so the scores must be
// materialised; nothing fuses.
// CHECK-LABEL: func.func @probabilities_escape
// CHECK-NOT: megatron.attention
// CHECK: megatron.softmax
// CHECK: megatron.merge_heads
func.func @probabilities_escape(%qkv: tensor<?x?x24xf32>) -> (tensor<?x?x8xf32>, tensor<?x2x?x?xf32>) {
  %q = megatron.slice %qkv dim 2 start 0 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %k = megatron.slice %qkv dim 2 start 8 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %v = megatron.slice %qkv dim 2 start 16 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %qh = megatron.split_heads %q, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %kh = megatron.split_heads %k, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %vh = megatron.split_heads %v, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
  %p = megatron.softmax %s : tensor<?x2x?x?xf32>
  %c = megatron.matmul %p, %vh : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
  %o = megatron.merge_heads %c : tensor<?x2x?x4xf32> -> tensor<?x?x8xf32>
  return %o, %p : tensor<?x?x8xf32>, tensor<?x2x?x?xf32>
}

// -----

// Negative: keys and queries swapped (K first in the tensor) is not the
// Q|K|V layout the kernel reads.
// CHECK-LABEL: func.func @wrong_order
// CHECK-NOT: megatron.attention
func.func @wrong_order(%qkv: tensor<?x?x24xf32>) -> tensor<?x?x8xf32> {
  %q = megatron.slice %qkv dim 2 start 8 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %k = megatron.slice %qkv dim 2 start 0 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %v = megatron.slice %qkv dim 2 start 16 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
  %qh = megatron.split_heads %q, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %kh = megatron.split_heads %k, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %vh = megatron.split_heads %v, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
  %p = megatron.softmax %s : tensor<?x2x?x?xf32>
  %c = megatron.matmul %p, %vh : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
  %o = megatron.merge_heads %c : tensor<?x2x?x4xf32> -> tensor<?x?x8xf32>
  return %o : tensor<?x?x8xf32>
}
