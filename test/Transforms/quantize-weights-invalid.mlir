// RUN: megatron-opt %s -megatron-quantize-weights="group-size=24" -verify-diagnostics

func.func @group_does_not_divide(%x: tensor<?x32xf32>) -> tensor<?x64xf32> {
  %w = megatron.weight "fc1.weight" : tensor<64x32xf32>
  // expected-error @+1 {{--group-size 24 does not divide the 32 input columns of this weight}}
  %y = megatron.linear %x, %w : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
