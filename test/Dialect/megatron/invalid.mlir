// RUN: megatron-opt %s --split-input-file --verify-diagnostics

func.func @weight_dynamic() {
  // expected-error @+1 {{weight 'w' must have a static shape, got [?, 32]}}
  %w = megatron.weight "w" : tensor<?x32xf32>
  return
}

// -----

func.func @weight_empty_name() {
  // expected-error @+1 {{needs a non-empty tensor name}}
  %w = megatron.weight "" : tensor<32xf32>
  return
}

// -----

func.func @weight_int() {
  // expected-error @+1 {{result #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values}}
  %w = megatron.weight "w" : tensor<32xi32>
  return
}

// -----

func.func @embedding_width(%t: tensor<128x32xf32>, %ids: tensor<?x?xi64>) {
  // expected-error @+1 {{result shape [?, ?, 16] does not match the expected [?, ?, 32]}}
  %e = megatron.embedding %t[%ids] : tensor<128x32xf32>, tensor<?x?xi64> -> tensor<?x?x16xf32>
  return
}

// -----

func.func @embedding_table_rank(%t: tensor<128xf32>, %ids: tensor<?x?xi64>) {
  // expected-error @+1 {{table must be [rows, width], got [128]}}
  %e = megatron.embedding %t[%ids] : tensor<128xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @embedding_negative_row_offset(%t: tensor<128x32xf32>, %ids: tensor<?x?xi64>) {
  // expected-error @+1 {{row_offset must not be negative, got -64}}
  %e = megatron.embedding %t[%ids] {row_offset = -64 : i64} : tensor<128x32xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @add_broadcast(%a: tensor<?x?x32xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{cannot broadcast [?, ?, 32] with [16]}}
  %s = megatron.add %a, %b : tensor<?x?x32xf32>, tensor<16xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @add_types(%a: tensor<4xf32>, %b: tensor<4xf16>) {
  // expected-error @+1 {{mixes element types 'f32' and 'f16'}}
  %s = megatron.add %a, %b : tensor<4xf32>, tensor<4xf16> -> tensor<4xf32>
  return
}

// -----

func.func @linear_in(%x: tensor<?x?x32xf32>, %w: tensor<64x16xf32>) {
  // expected-error @+1 {{input features [?, ?, 32] do not match weight [out, in] [64, 16]}}
  %y = megatron.linear %x, %w : tensor<?x?x32xf32>, tensor<64x16xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @linear_bias(%x: tensor<?x32xf32>, %w: tensor<64x32xf32>, %b: tensor<32xf32>) {
  // expected-error @+1 {{bias has shape [32], expected [64]}}
  %y = megatron.linear %x, %w, %b : tensor<?x32xf32>, tensor<64x32xf32>, tensor<32xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @linear_out(%x: tensor<?x32xf32>, %w: tensor<64x32xf32>) {
  // expected-error @+1 {{result shape [?, 32] does not match the expected [?, 64]}}
  %y = megatron.linear %x, %w : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @int8_input_f32_weight(%x: tensor<?x32xf32>, %w: tensor<64x32xf32>) {
  // expected-error @+1 {{int8_input needs an int8 weight (a dequantize of int8 values)}}
  %y = megatron.linear %x, %w int8_input : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @int8_input_grouped(%x: tensor<?x32xf32>, %q: tensor<64x32xi8>, %s: tensor<64x4xf32>) {
  %w = megatron.dequantize %q, %s : tensor<64x32xi8>, tensor<64x4xf32> -> tensor<64x32xf32>
  // expected-error @+1 {{int8_input needs one weight scale per output channel, got scales [64, 4]}}
  %y = megatron.linear %x, %w int8_input : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @matmul_k(%a: tensor<?x4x?x8xf32>, %b: tensor<?x4x?x16xf32>) {
  // expected-error @+1 {{contraction dimensions differ: [?, 4, ?, 8] and [?, 4, ?, 16] (rhs transposed)}}
  %y = megatron.matmul %a, %b {transpose_rhs} : tensor<?x4x?x8xf32>, tensor<?x4x?x16xf32> -> tensor<?x4x?x?xf32>
  return
}

// -----

func.func @matmul_batch(%a: tensor<2x4x8x8xf32>, %b: tensor<2x2x8x8xf32>) {
  // expected-error @+1 {{batch dimensions differ: [2, 4, 8, 8] and [2, 2, 8, 8]}}
  %y = megatron.matmul %a, %b : tensor<2x4x8x8xf32>, tensor<2x2x8x8xf32> -> tensor<2x4x8x8xf32>
  return
}

// -----

func.func @layer_norm_gamma(%x: tensor<?x?x32xf32>, %g: tensor<16xf32>, %b: tensor<32xf32>) {
  // expected-error @+1 {{gamma has shape [16], expected [32]}}
  %y = megatron.layer_norm %x, %g, %b {epsilon = 1.0e-5 : f64} : tensor<?x?x32xf32>, tensor<16xf32>, tensor<32xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @layer_norm_eps(%x: tensor<?x32xf32>, %g: tensor<32xf32>, %b: tensor<32xf32>) {
  // expected-error @+1 {{epsilon must be positive, got 0}}
  %y = megatron.layer_norm %x, %g, %b {epsilon = 0.0 : f64} : tensor<?x32xf32>, tensor<32xf32>, tensor<32xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @mask_nothing(%s: tensor<?x4x?x?xf32>) {
  // expected-error @+1 {{masks nothing: give a padding mask, 'causal', or both}}
  %y = megatron.attention_mask %s : tensor<?x4x?x?xf32> -> tensor<?x4x?x?xf32>
  return
}

// -----

func.func @mask_shape(%s: tensor<2x4x8x8xf32>, %m: tensor<2x7xi64>) {
  // expected-error @+1 {{padding mask must be [batch, key] = [2, 8], got [2, 7]}}
  %y = megatron.attention_mask %s, %m : tensor<2x4x8x8xf32>, tensor<2x7xi64> -> tensor<2x4x8x8xf32>
  return
}

// -----

func.func @mask_rank(%s: tensor<4x8x8xf32>) {
  // expected-error @+1 {{scores must be [batch, heads, query, key], got [4, 8, 8]}}
  %y = megatron.attention_mask %s {causal} : tensor<4x8x8xf32> -> tensor<4x8x8xf32>
  return
}

// -----

func.func @split_heads_divide(%x: tensor<?x?x30xf32>) {
  // expected-error @+1 {{input must be [batch, seq, heads*dim] with a static last dimension divisible by 4 heads, got [?, ?, 30]}}
  %y = megatron.split_heads %x, 4 : tensor<?x?x30xf32> -> tensor<?x4x?x7xf32>
  return
}

// -----

func.func @split_heads_zero(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{attribute 'num_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %y = megatron.split_heads %x, 0 : tensor<?x?x32xf32> -> tensor<?x4x?x8xf32>
  return
}

// -----

func.func @merge_heads(%x: tensor<?x4x?x8xf32>) {
  // expected-error @+1 {{result shape [?, ?, 16] does not match the expected [?, ?, 32]}}
  %y = megatron.merge_heads %x : tensor<?x4x?x8xf32> -> tensor<?x?x16xf32>
  return
}

// -----

func.func @transpose_perm(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{is not a permutation: [0, 0]}}
  %y = megatron.transpose %x [0, 0] : tensor<4x8xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @reshape_count(%x: tensor<96x32xf32>) {
  // expected-error @+1 {{cannot reshape [96, 32] (3072 elements) to [4, 3, 8, 16] (1536 elements)}}
  %y = megatron.reshape %x : tensor<96x32xf32> -> tensor<4x3x8x16xf32>
  return
}

// -----

func.func @reshape_dynamic(%x: tensor<?x1xf32>) {
  // expected-error @+1 {{result has 1 dynamic dimensions but 0 sizes were given}}
  %y = megatron.reshape %x : tensor<?x1xf32> -> tensor<?xf32>
  return
}

// -----

func.func @slice_range(%x: tensor<?x?x96xf32>) {
  // expected-error @+1 {{range [64, 128) does not fit dimension 2 of [?, ?, 96]}}
  %y = megatron.slice %x dim 2 start 64 size 64 : tensor<?x?x96xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @concat_mismatch(%a: tensor<4x8xf32>, %b: tensor<4x9xf32>) {
  // expected-error @+1 {{inputs differ outside dimension 0: [4, 8] and [4, 9]}}
  %y = megatron.concat %a, %b dim 0 : (tensor<4x8xf32>, tensor<4x9xf32>) -> tensor<8x8xf32>
  return
}

// -----

// expected-error @+1 {{'megatron.config' needs model_type = "bert" or "gpt2"}}
module attributes {megatron.config = {model_type = "t5", task = "base"}} {
}

// -----

// expected-error @+1 {{two arguments are named 'input_ids'}}
func.func @dup_inputs(%a: tensor<?x?xi64> {megatron.input = "input_ids"}, %b: tensor<?x?xi64> {megatron.input = "input_ids"}) {
  return
}

// -----

// expected-error @+1 {{'megatron.output' must be a non-empty string}}
func.func @bad_output() -> (tensor<4xf32> {megatron.output = 3 : i64}) {
  %w = megatron.weight "w" : tensor<4xf32>
  return %w : tensor<4xf32>
}

// -----

func.func @quantize_scales_rows(%w: tensor<64x32xf32>) {
  // expected-error @+1 {{scales [32, 1] must be [rows, groups] with groups dividing the 32 columns of [64, 32]}}
  %q, %s = megatron.quantize %w : tensor<64x32xf32> -> tensor<64x32xi8>, tensor<32x1xf32>
  return
}

// -----

func.func @quantize_groups(%w: tensor<64x32xf32>) {
  // expected-error @+1 {{scales [64, 5] must be [rows, groups] with groups dividing the 32 columns}}
  %q, %s = megatron.quantize %w : tensor<64x32xf32> -> tensor<64x32xi8>, tensor<64x5xf32>
  return
}

// -----

func.func @quantize_values_shape(%w: tensor<64x32xf32>) {
  // expected-error @+1 {{values [32, 64] must have the input's shape [64, 32]}}
  %q, %s = megatron.quantize %w : tensor<64x32xf32> -> tensor<32x64xi8>, tensor<32x1xf32>
  return
}

// -----

func.func @quantize_dynamic(%w: tensor<?x32xf32>) {
  // expected-error @+1 {{quantizes a static [rows, cols] weight, got [?, 32]}}
  %q, %s = megatron.quantize %w : tensor<?x32xf32> -> tensor<?x32xi8>, tensor<?x1xf32>
  return
}

// -----

func.func @dequantize_result(%q: tensor<64x32xi8>, %s: tensor<64x4xf32>) {
  // expected-error @+1 {{result [64, 16] must have the values' shape [64, 32]}}
  %w = megatron.dequantize %q, %s : tensor<64x32xi8>, tensor<64x4xf32> -> tensor<64x16xf32>
  return
}
