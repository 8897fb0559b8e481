// RUN: megatron-opt %s -split-input-file -megatron-quantize-weights | FileCheck %s
// RUN: megatron-opt %s -split-input-file -megatron-quantize-weights="group-size=8" | FileCheck %s --check-prefix=GROUP
// RUN: megatron-opt %s -split-input-file -megatron-quantize-weights="embeddings=true" | FileCheck %s --check-prefix=EMB
// RUN: megatron-opt %s -split-input-file -megatron-quantize-weights="activations=true" | FileCheck %s --check-prefix=ACT
// RUN: megatron-opt %s -split-input-file -megatron-quantize-weights="activations=true embeddings=true" | FileCheck %s --check-prefix=ACTEMB

// Linear weights become int8 values and per-output-channel scales (per
// group of 8 columns with group-size=8); biases stay as they are.
// CHECK-LABEL: func.func @linears
// CHECK: %[[W:.*]] = megatron.weight "fc1.weight"
// CHECK: %[[Q:.*]], %[[S:.*]] = megatron.quantize %[[W]] : tensor<64x32xf32> -> tensor<64x32xi8>, tensor<64x1xf32>
// CHECK: %[[D:.*]] = megatron.dequantize %[[Q]], %[[S]]
// CHECK: megatron.quantize %{{.*}} : tensor<32x64xf32> -> tensor<32x64xi8>, tensor<32x1xf32>
// CHECK: %[[D2:.*]] = megatron.dequantize
// CHECK: megatron.linear %arg0, %[[D]], %{{.*}} gelu tanh :
// CHECK: megatron.linear_add_layer_norm %{{.*}}, %[[D2]] residual %arg0 norm %{{[^ ]*}}, %{{[^ ]*}} {epsilon
// With activations=true the quantized linears quantize their input too.
// ACT-LABEL: func.func @linears
// ACT: megatron.linear %arg0, %{{.*}}, %{{.*}} gelu tanh int8_input :
// ACT: megatron.linear_add_layer_norm %{{.*}} residual %arg0 norm %{{[^ ]*}}, %{{[^ ]*}} int8_input {epsilon
// GROUP-LABEL: func.func @linears
// GROUP: megatron.quantize %{{.*}} : tensor<64x32xf32> -> tensor<64x32xi8>, tensor<64x4xf32>
// GROUP: megatron.quantize %{{.*}} : tensor<32x64xf32> -> tensor<32x64xi8>, tensor<32x8xf32>
func.func @linears(%x: tensor<?x32xf32>) -> (tensor<?x32xf32>, tensor<?x32xf32>) {
  %w1 = megatron.weight "fc1.weight" : tensor<64x32xf32>
  %b1 = megatron.weight "fc1.bias" : tensor<64xf32>
  %w2 = megatron.weight "fc2.weight" : tensor<32x64xf32>
  %g = megatron.weight "ln.weight" : tensor<32xf32>
  %b = megatron.weight "ln.bias" : tensor<32xf32>
  %h = megatron.linear %x, %w1, %b1 gelu tanh : tensor<?x32xf32>, tensor<64x32xf32>, tensor<64xf32> -> tensor<?x64xf32>
  %sum, %norm = megatron.linear_add_layer_norm %h, %w2 residual %x norm %g, %b {epsilon = 1.0e-05 : f64}
      : tensor<?x64xf32>, tensor<32x64xf32>, tensor<?x32xf32>, tensor<32xf32>, tensor<32xf32> -> tensor<?x32xf32>, tensor<?x32xf32>
  return %sum, %norm : tensor<?x32xf32>, tensor<?x32xf32>
}

// -----

// The LM head tied to the word embedding stays f32 unless embeddings=true;
// then the lookup and the head read one int8 table. Position embeddings
// stay f32 either way.
// CHECK-LABEL: func.func @tied_head
// CHECK-NOT: megatron.quantize
// CHECK: return
// EMB-LABEL: func.func @tied_head
// EMB: %[[WTE:.*]] = megatron.weight "wte"
// EMB: %[[Q:.*]], %[[S:.*]] = megatron.quantize %[[WTE]] : tensor<128x32xf32> -> tensor<128x32xi8>, tensor<128x1xf32>
// EMB: %[[D:.*]] = megatron.dequantize %[[Q]], %[[S]]
// EMB-NOT: megatron.quantize
// EMB: megatron.embedding %[[D]][%arg0]
// EMB: megatron.embedding %{{.*}}[%{{.*}}] : tensor<64x32xf32>
// EMB: megatron.linear %{{.*}}, %[[D]] :
// A head left f32 keeps its input as it is; a quantized one quantizes it.
// ACT-LABEL: func.func @tied_head
// ACT-NOT: int8_input
// ACT: return
// ACTEMB-LABEL: func.func @tied_head
// ACTEMB: megatron.embedding %{{.*}}[%arg0] :
// ACTEMB: megatron.linear %{{.*}}, %{{.*}} int8_input :
func.func @tied_head(%ids: tensor<?x?xi64> {megatron.input = "input_ids"}) -> tensor<?x?x128xf32> {
  %wte = megatron.weight "wte" : tensor<128x32xf32>
  %wpe = megatron.weight "wpe" : tensor<64x32xf32>
  %pos = megatron.positions %ids : tensor<?x?xi64>
  %e = megatron.embedding %wte[%ids] : tensor<128x32xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
  %p = megatron.embedding %wpe[%pos] : tensor<64x32xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
  %x = megatron.add %e, %p : tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x32xf32>
  %logits = megatron.linear %x, %wte : tensor<?x?x32xf32>, tensor<128x32xf32> -> tensor<?x?x128xf32>
  return %logits : tensor<?x?x128xf32>
}
