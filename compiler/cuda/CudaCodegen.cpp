//===- CudaCodegen.cpp - the plan's CUDA kernels as PTX -------------------===//

#include "compiler/cuda/CudaCodegen.h"
#include "compiler/cuda/FlashAttention.h"
#include "compiler/cuda/Int8Linear.h"

#include "mlir/Conversion/AffineToStandard/AffineToStandard.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"

using namespace megatron;

namespace {
#include "compiler/cuda/KernelSource.inc"
} // namespace

llvm::Expected<std::vector<PtxModule>>
megatron::generateCudaKernels(llvm::ArrayRef<std::string> archs,
                              const std::string &libdevice) {
  if (archs.empty())
    return llvm::createStringError("--target cuda needs at least one --cuda-arch");
  for (const std::string &arch : archs) {
    unsigned version = 0;
    if (!llvm::StringRef(arch).starts_with("sm_") ||
        llvm::StringRef(arch).drop_front(3).getAsInteger(10, version) || version < 80)
      return llvm::createStringError(
          llvm::formatv("--cuda-arch '{0}' is not an sm_XY architecture of sm_80 or newer "
                        "(the tensor-core kernels need it)",
                        arch));
  }
  // Without libdevice the math functions stay unresolved externs that only
  // ptxas would notice.
  if (!llvm::sys::fs::exists(libdevice))
    return llvm::createStringError(llvm::formatv(
        "--target cuda needs CUDA's libdevice ({0} is missing; install the CUDA "
        "toolkit or pass --cuda-root)",
        libdevice));

  mlir::DialectRegistry registry;
  registry.insert<mlir::affine::AffineDialect, mlir::arith::ArithDialect,
                  mlir::cf::ControlFlowDialect, mlir::func::FuncDialect,
                  mlir::gpu::GPUDialect, mlir::LLVM::LLVMDialect, mlir::math::MathDialect,
                  mlir::memref::MemRefDialect, mlir::NVVM::NVVMDialect,
                  mlir::scf::SCFDialect>();
  mlir::NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  mlir::registerBuiltinDialectTranslation(registry);
  mlir::registerLLVMDialectTranslation(registry);
  mlir::registerNVVMDialectTranslation(registry);
  mlir::registerGPUDialectTranslation(registry);
  mlir::arith::registerConvertArithToLLVMInterface(registry);
  mlir::cf::registerConvertControlFlowToLLVMInterface(registry);
  mlir::registerConvertFuncToLLVMInterface(registry);
  mlir::registerConvertMemRefToLLVMInterface(registry);
  mlir::registerConvertMathToLLVMInterface(registry);
  mlir::MLIRContext context(registry);
  context.loadAllAvailableDialects();

  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    if (diagnostics.empty())
      diagnostics = d.str();
    return mlir::success();
  });
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceString<mlir::ModuleOp>(kKernelSource, &context);
  if (!module)
    return llvm::createStringError("the CUDA kernel library does not parse: " + diagnostics);
  // The kernels built with OpBuilder: the int8-weight GEMV, and the
  // tensor-core kernels of 16-bit artifacts per operand type: the
  // attention per head size (other sizes take the SIMT kernel) and the
  // int8-weight matmul of a few rows.
  auto library = *module->getOps<mlir::gpu::GPUModuleOp>().begin();
  addInt8GemvKernel(library);
  for (bool bf16 : {false, true}) {
    for (int64_t dim : {64, 128})
      addFlashAttentionKernel(library, bf16, dim);
    addInt8MatmulKernel(library, bf16);
  }
  if (mlir::failed(mlir::verify(*module)))
    return llvm::createStringError("the CUDA kernel library does not verify: " + diagnostics);
  std::vector<std::string> kernels;
  std::vector<uint32_t> parameters;
  module->walk([&](mlir::gpu::GPUFuncOp f) {
    if (!f.isKernel())
      return;
    kernels.push_back(f.getName().str());
    // NVVM's calling convention: a memref of rank r becomes its descriptor's
    // 3 + 2r fields (pointers, offset, sizes, strides); a scalar, one.
    uint32_t count = 0;
    for (mlir::Type t : f.getArgumentTypes())
      count += mlir::isa<mlir::MemRefType>(t)
                   ? 3 + 2 * mlir::cast<mlir::MemRefType>(t).getRank()
                   : 1;
    parameters.push_back(count);
  });

  mlir::PassManager pm(&context);
  for (const std::string &arch : archs) {
    mlir::GpuNVVMAttachTargetOptions target;
    target.chip = arch;
    target.optLevel = 3;
    target.linkLibs.push_back(libdevice);
    pm.addPass(mlir::createGpuNVVMAttachTarget(target));
  }
  mlir::OpPassManager &gpu = pm.nest<mlir::gpu::GPUModuleOp>();
  gpu.addPass(mlir::createLowerAffinePass());
  gpu.addPass(mlir::createSCFToControlFlowPass());
  gpu.addPass(mlir::createConvertGpuOpsToNVVMOps());
  pm.addPass(mlir::createReconcileUnrealizedCastsPass());
  mlir::GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  pm.addPass(mlir::createGpuModuleToBinaryPass(binary));
  if (mlir::failed(pm.run(*module)))
    return llvm::createStringError("CUDA code generation failed: " + diagnostics);

  std::vector<PtxModule> out;
  module->walk([&](mlir::gpu::BinaryOp binaryOp) {
    for (mlir::Attribute a : binaryOp.getObjects()) {
      auto object = mlir::cast<mlir::gpu::ObjectAttr>(a);
      auto target = mlir::cast<mlir::NVVM::NVVMTargetAttr>(object.getTarget());
      out.push_back(
          {target.getChip().str(), object.getObject().getValue().str(), kernels, parameters});
    }
  });
  if (out.size() != archs.size())
    return llvm::createStringError("CUDA code generation produced no PTX");
  return out;
}
