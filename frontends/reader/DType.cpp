//===- DType.cpp - element types of checkpoint tensors --------------------===//

#include "frontends/reader/DType.h"

using namespace megatron::reader;

namespace {
/// Every spelling of one dtype, so that all lookups share one table.
struct DTypeInfo {
  DType dtype;
  size_t size;
  const char *name;
  const char *torchStorage;
  const char *torchName;
  const char *safetensors;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::F64, 8, "f64", "DoubleStorage", "float64", "F64"},
    {DType::F32, 4, "f32", "FloatStorage", "float32", "F32"},
    {DType::F16, 2, "f16", "HalfStorage", "float16", "F16"},
    {DType::BF16, 2, "bf16", "BFloat16Storage", "bfloat16", "BF16"},
    {DType::I64, 8, "i64", "LongStorage", "int64", "I64"},
    {DType::I32, 4, "i32", "IntStorage", "int32", "I32"},
    {DType::I16, 2, "i16", "ShortStorage", "int16", "I16"},
    {DType::I8, 1, "i8", "CharStorage", "int8", "I8"},
    {DType::U8, 1, "u8", "ByteStorage", "uint8", "U8"},
    {DType::Bool, 1, "bool", "BoolStorage", "bool", "BOOL"},
};

const DTypeInfo &info(DType dtype) {
  for (const DTypeInfo &entry : kDTypes)
    if (entry.dtype == dtype)
      return entry;
  // Every enumerator has a row; reaching here means the table is incomplete.
  return kDTypes[0];
}

template <typename Field>
std::optional<DType> lookup(llvm::StringRef text, Field field) {
  for (const DTypeInfo &entry : kDTypes)
    if (text == entry.*field)
      return entry.dtype;
  return std::nullopt;
}
} // namespace

size_t megatron::reader::dtypeSize(DType dtype) { return info(dtype).size; }

llvm::StringRef megatron::reader::dtypeName(DType dtype) {
  return info(dtype).name;
}

std::optional<DType>
megatron::reader::dtypeFromTorchStorage(llvm::StringRef className) {
  return lookup(className, &DTypeInfo::torchStorage);
}

std::optional<DType>
megatron::reader::dtypeFromTorchName(llvm::StringRef name) {
  return lookup(name, &DTypeInfo::torchName);
}

std::optional<DType>
megatron::reader::dtypeFromSafetensors(llvm::StringRef name) {
  return lookup(name, &DTypeInfo::safetensors);
}
