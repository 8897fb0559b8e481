// RUN: megatron-opt %s -split-input-file -verify-diagnostics

plan.rank 0 arena 64 {
  // expected-error @+1 {{bytes [32, +64) lie outside the arena of 64 bytes}}
  plan.buffer activation @t : f32 ["4"] at 32 size 64
}

// -----

plan.rank 0 arena 64 {
  // expected-error @+1 {{dimension '2*Tokens' is not a constant times symbols}}
  plan.buffer activation @t : f32 ["2*Tokens"] at 0 size 64
}

// -----

plan.rank 0 arena 0 {
  // expected-error @+1 {{holds 512 bytes, its size says 256}}
  plan.weight @w : tensor<16x8xf32> as f32 at 0 size 256 {
    %0 = megatron.weight "wte" : tensor<16x8xf32>
    plan.yield %0 : tensor<16x8xf32>
  }
}

// -----

plan.rank 0 arena 0 {
  // expected-error @+1 {{yields 'tensor<16x8xf32>' but is declared 'tensor<8x16xf32>'}}
  plan.weight @w : tensor<8x16xf32> as f16 at 0 size 256 {
    %0 = megatron.weight "wte" : tensor<16x8xf32>
    plan.yield %0 : tensor<16x8xf32>
  }
}

// -----

plan.rank 0 arena 128 {
  plan.buffer input @ids : i64 ["Batch"] at 0 size 64
  plan.buffer activation @t : f32 ["Batch"] at 64 size 64
  // expected-error @+1 {{@t is not an output buffer of this rank}}
  plan.entry @forward [@ids] -> [@t] {
  }
}

// -----

plan.rank 0 arena 128 {
  plan.buffer input @x : f32 ["Batch"] at 0 size 64
  plan.buffer output @y : f32 ["Batch"] at 64 size 64
  plan.entry @forward [@x] -> [@y] {
    // expected-error @+1 {{layer_norm takes 3 inputs, has 1}}
    plan.step layer_norm [@x] -> [@y] floats [1.0e-05]
  }
}

// -----

plan.rank 0 arena 128 {
  plan.buffer input @x : f32 ["Batch"] at 0 size 64
  plan.buffer output @y : f32 ["Batch"] at 64 size 64
  plan.entry @forward [@x] -> [@y] {
    // expected-error @+1 {{gelu takes 1 ints and 0 floats}}
    plan.step gelu [@x] -> [@y]
  }
}

// -----

plan.rank 0 arena 128 {
  plan.buffer input @x : f32 ["Batch"] at 0 size 64
  plan.buffer output @y : f32 ["Batch"] at 64 size 64
  plan.entry @forward [@x] -> [@y] {
    // expected-error @+1 {{reads @nowhere, which is no buffer or weight of this rank}}
    plan.step tanh [@nowhere] -> [@y]
  }
}

// -----

plan.rank 0 arena 128 {
  plan.buffer input @x : f32 ["Batch"] at 0 size 64
  plan.buffer output @y : f32 ["Batch"] at 64 size 64
  plan.entry @forward [@x] -> [@y] {
    // expected-error @+1 {{writes @x, which is no writable buffer of this rank}}
    plan.step tanh [@y] -> [@x]
  }
}

// -----

plan.rank 0 arena 128 {
  plan.buffer input @x : f32 ["Batch"] at 0 size 64
  plan.buffer output @y : f32 ["Batch"] at 64 size 64
  plan.entry @forward [@x] -> [@y] {
    // expected-error @+1 {{only cache_write writes a kv_cache buffer}}
    plan.step cache_write [@x] -> [@y]
  }
}

// -----

plan.rank 0 arena 0 {
  // expected-error @+1 {{stores 'f32' values as 'i8': int8 values are stored as i8, and only they}}
  plan.weight @w : tensor<16x8xf32> as i8 at 0 size 128 {
    %0 = megatron.weight "wte" : tensor<16x8xf32>
    plan.yield %0 : tensor<16x8xf32>
  }
}

// -----

plan.rank 0 arena 256 {
  plan.weight @q : tensor<16x8xi8> as i8 at 0 size 128 {
    %0 = megatron.weight "w" : tensor<16x8xf32>
    %q, %s = megatron.quantize %0 : tensor<16x8xf32> -> tensor<16x8xi8>, tensor<16x1xf32>
    plan.yield %q : tensor<16x8xi8>
  }
  plan.buffer input @x : f32 ["Batch", "8"] at 0 size 64
  plan.buffer output @y : f32 ["Batch", "16"] at 64 size 128
  plan.entry @forward [@x] -> [@y] {
    // expected-error @+1 {{reads the int8 weight @q where it takes none, or without f32 scales after it}}
    plan.step linear [@x, @q] -> [@y] ints [0, 0]
  }
}
