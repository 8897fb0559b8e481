// RUN: megatron-opt %s -megatron-quantize-weights="activations=true group-size=8" -verify-diagnostics

// An int8 input times int8 values sums in int32 and is scaled after: the
// weight needs one scale per output channel.
// expected-error @+1 {{int8 activations need one weight scale per output channel, not groups of 8}}
func.func @grouped(%x: tensor<?x32xf32>) -> tensor<?x64xf32> {
  %w = megatron.weight "fc1.weight" : tensor<64x32xf32>
  %y = megatron.linear %x, %w : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
