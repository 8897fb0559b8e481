//===- Safetensors.h - .safetensors files ----------------------*- C++ -*-===//
//
// An 8-byte little-endian header length, a JSON header mapping tensor names
// to {dtype, shape, data_offsets}, then the data section those offsets index.
// Every claim of the header is checked against the file before any tensor is
// handed out; tensors read their bytes lazily.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_SAFETENSORS_H
#define MEGATRON_FRONTENDS_READER_SAFETENSORS_H

#include "frontends/reader/ByteSource.h"
#include "frontends/reader/Tensor.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <vector>

namespace megatron::reader {

/// The tensors in header order; `__metadata__` is ignored.
llvm::Expected<std::vector<NamedTensor>> loadSafetensors(llvm::StringRef path);
llvm::Expected<std::vector<NamedTensor>>
loadSafetensors(std::shared_ptr<const ByteSource> bytes);

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_SAFETENSORS_H
