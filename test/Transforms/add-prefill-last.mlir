// RUN: megatron-opt %s -split-input-file -verify-diagnostics -megatron-add-prefill-last | FileCheck %s

// One rank: the LM head reads the last position only; its output keeps the
// bytes of `logits`, the slice's result goes after the arena (2 x 8 x 4 bytes).
// CHECK-LABEL: plan.rank 0 arena 576
// CHECK: activation @last_t1 : f32 ["Batch", "1", "8"] at 512 size 64
// CHECK: output @last_logits : f32 ["Batch", "1", "32"] at 256 size 256
// CHECK: plan.entry @prefill [@ids] -> [@logits]
// CHECK-NEXT: embedding
// CHECK-NEXT: linear [@t1, @w] -> [@logits]
// CHECK: plan.entry @prefill_last [@ids] -> [@last_logits]
// CHECK-NEXT: embedding [@w, @ids] -> [@t1]
// CHECK-NEXT: slice [@t1] -> [@last_t1] ints [1, -1]
// CHECK-NEXT: linear [@last_t1, @w] -> [@last_logits] ints [0, 0]
// CHECK-NEXT: }
// CHECK: plan.entry @decode
// CHECK-NEXT: embedding
// CHECK-NEXT: linear [@t1, @w] -> [@logits]
module attributes {plan.max_batch = 2 : i64, plan.max_sequence = 4 : i64, plan.max_choices = 1 : i64} {
  plan.rank 0 arena 512 {
    plan.buffer input @ids : i64 ["Batch", "Sequence"] at 0 size 64
    plan.buffer activation @t1 : f32 ["Batch", "Sequence", "8"] at 64 size 192
    plan.buffer output @logits : f32 ["Batch", "Sequence", "32"] at 256 size 256
    plan.weight @w : tensor<32x8xf32> as f32 at 0 size 1024 {
      %0 = megatron.weight "wte" : tensor<32x8xf32>
      plan.yield %0 : tensor<32x8xf32>
    }
    plan.entry @prefill [@ids] -> [@logits] {
      plan.step embedding [@w, @ids] -> [@t1] ints [0, 32]
      plan.step linear [@t1, @w] -> [@logits] ints [0, 0]
    }
    plan.entry @decode [@ids] -> [@logits] {
      plan.step embedding [@w, @ids] -> [@t1] ints [0, 32]
      plan.step linear [@t1, @w] -> [@logits] ints [0, 0]
    }
  }
}

// -----

// A tensor-parallel rank: the LM head's slice of the vocabulary and its
// all-gather both take one position.
// CHECK-LABEL: plan.rank 1 arena 640
// CHECK: activation @last_t2 : f32 ["Batch", "1", "16"] at 64 size 128
// CHECK: activation @last_t1 : f32 ["Batch", "1", "8"] at 576 size 64
// CHECK: output @last_logits : f32 ["Batch", "1", "32"] at 320 size 256
// CHECK: plan.entry @prefill_last [@ids] -> [@last_logits]
// CHECK-NEXT: embedding [@w, @ids] -> [@t1]
// CHECK-NEXT: slice [@t1] -> [@last_t1] ints [1, -1]
// CHECK-NEXT: linear [@last_t1, @w] -> [@last_t2] ints [0, 0]
// CHECK-NEXT: all_gather [@last_t2] -> [@last_logits] ints [2]
// CHECK-NEXT: }
module attributes {plan.max_batch = 2 : i64, plan.max_sequence = 4 : i64, plan.max_choices = 1 : i64} {
  plan.rank 1 arena 576 {
    plan.buffer input @ids : i64 ["Batch", "Sequence"] at 0 size 64
    plan.buffer activation @t2 : f32 ["Batch", "Sequence", "16"] at 64 size 256
    plan.buffer activation @t1 : f32 ["Batch", "Sequence", "8"] at 320 size 256
    plan.buffer output @logits : f32 ["Batch", "Sequence", "32"] at 320 size 256
    plan.weight @w : tensor<16x8xf32> as f32 at 0 size 512 {
      %0 = megatron.weight "wte" : tensor<16x8xf32>
      plan.yield %0 : tensor<16x8xf32>
    }
    plan.entry @prefill [@ids] -> [@logits] {
      plan.step embedding [@w, @ids] -> [@t1] ints [1, 32]
      plan.step linear [@t1, @w] -> [@t2] ints [0, 0]
      plan.step all_gather [@t2] -> [@logits] ints [2]
    }
  }
}

// -----

// BERT (forward) and a prefill whose output no LM head writes stay as they are.
// CHECK-LABEL: plan.rank 0 arena 512
// CHECK-NOT: prefill_last
// CHECK: plan.entry @forward
// CHECK: plan.entry @prefill
// CHECK-NOT: prefill_last
module attributes {plan.max_batch = 2 : i64, plan.max_sequence = 4 : i64, plan.max_choices = 1 : i64} {
  plan.rank 0 arena 512 {
    plan.buffer input @ids : i64 ["Batch", "Sequence"] at 0 size 64
    plan.buffer output @hidden : f32 ["Batch", "Sequence", "8"] at 64 size 256
    plan.weight @w : tensor<32x8xf32> as f32 at 0 size 1024 {
      %0 = megatron.weight "wte" : tensor<32x8xf32>
      plan.yield %0 : tensor<32x8xf32>
    }
    plan.entry @forward [@ids] -> [@hidden] {
      plan.step embedding [@w, @ids] -> [@hidden] ints [0, 32]
    }
    plan.entry @prefill [@ids] -> [@hidden] {
      plan.step embedding [@w, @ids] -> [@hidden] ints [0, 32]
    }
  }
}

// -----

module attributes {plan.max_batch = 2 : i64, plan.max_sequence = 4 : i64, plan.max_choices = 1 : i64} {
  plan.rank 0 arena 512 {
    plan.buffer input @x : f32 ["Batch*Sequence", "8"] at 0 size 256
    plan.buffer output @logits : f32 ["Batch*Sequence", "32"] at 256 size 256
    plan.weight @w : tensor<32x8xf32> as f32 at 0 size 1024 {
      %0 = megatron.weight "wte" : tensor<32x8xf32>
      plan.yield %0 : tensor<32x8xf32>
    }
    // expected-error @+1 {{the LM head's input is not [Batch, Sequence, hidden]}}
    plan.entry @prefill [@x] -> [@logits] {
      plan.step linear [@x, @w] -> [@logits] ints [0, 0]
    }
  }
}
