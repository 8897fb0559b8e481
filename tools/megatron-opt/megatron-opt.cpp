//===- megatron-opt.cpp - mlir-opt with the megatron dialects -------------===//

#include "compiler/Registration.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  megatron::registerAllDialects(registry);
  megatron::registerAllPasses();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "megatron-compiler optimizer driver\n", registry));
}
