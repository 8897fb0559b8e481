// RUN: megatron-opt %s | megatron-opt | FileCheck %s

// CHECK-LABEL: plan.rank 0 arena 8192
// CHECK: plan.buffer input @ids : i64 ["Batch", "Sequence"] at 0 size 512
// CHECK: plan.buffer kv_cache @kv0 : f32 ["Batch", "4", "64", "8"] at 4096 size 4096
// CHECK: plan.weight @w0 : tensor<16x8xf32> as f16 at 0 size 256
// CHECK-NEXT: megatron.weight "wte"
// CHECK-NEXT: plan.yield
// CHECK: plan.entry @forward [@ids] -> [@out]
// CHECK-NEXT: plan.step embedding [@w0, @ids] -> [@out] ints [0, 16]
// CHECK-NEXT: plan.step layer_norm [@out, @g, @g] -> [@out] floats [1.000000e-05]
// CHECK-NEXT: plan.step slice [@out] -> [@out] ints [2, 0]
plan.rank 0 arena 8192 {
  plan.buffer input @ids : i64 ["Batch", "Sequence"] at 0 size 512
  plan.buffer output @out : f32 ["Batch", "Sequence", "8"] at 512 size 2048
  plan.buffer activation @g : f32 ["8"] at 2560 size 64
  plan.buffer kv_cache @kv0 : f32 ["Batch", "4", "64", "8"] at 4096 size 4096
  plan.weight @w0 : tensor<16x8xf32> as f16 at 0 size 256 {
    %0 = megatron.weight "wte" : tensor<16x8xf32>
    plan.yield %0 : tensor<16x8xf32>
  }
  plan.entry @forward [@ids] -> [@out] {
    plan.step embedding [@w0, @ids] -> [@out] ints [0, 16]
    plan.step layer_norm [@out, @g, @g] -> [@out] floats [1.0e-05]
    plan.step slice [@out] -> [@out] ints [2, 0]
  }
}
