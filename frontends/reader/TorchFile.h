//===- TorchFile.h - files written by torch.save ---------------*- C++ -*-===//
//
// Both torch.save formats:
//  - zip (torch >= 1.6): one top folder (named after the file, or "archive")
//    holding data.pkl, data/<key> storage records, version and maybe
//    byteorder;
//  - legacy (torch < 1.6, or _use_new_zipfile_serialization=False): a magic
//    number, protocol version and sys_info pickle, the object pickle, a
//    pickle listing storage keys, then each storage as an 8-byte element
//    count and its raw bytes.
// Storages are bound lazily to ranges of the file; no tensor data is read.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_TORCHFILE_H
#define MEGATRON_FRONTENDS_READER_TORCHFILE_H

#include "frontends/reader/ByteSource.h"
#include "frontends/reader/Value.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>

namespace megatron::reader {

/// The object that was saved (for a checkpoint, its top-level dict).
llvm::Expected<ValuePtr> loadTorchFile(llvm::StringRef path);
/// The same for bytes from elsewhere (e.g. a .pt entry inside an NGC zip).
llvm::Expected<ValuePtr> loadTorchFile(std::shared_ptr<const ByteSource> bytes);

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_TORCHFILE_H
