//===- Pickle.h - a restricted, non-executing unpickler --------*- C++ -*-===//
//
// Reads Python pickles (protocols 0-5) as torch.save writes them and builds a
// Value tree. It never runs anything: globals resolve only against the
// allow-list of PickleGlobals.h, INST/OBJ/EXT* and out-of-band buffers are
// refused, and every length, index, stack and nesting depth is bounded, so
// hostile input gives an error naming the offset and opcode.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_PICKLE_H
#define MEGATRON_FRONTENDS_READER_PICKLE_H

#include "frontends/reader/ByteSource.h"
#include "frontends/reader/Value.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>

namespace megatron::reader {

/// Binds a persistent id (PERSID/BINPERSID) to the storage it names. torch
/// writes ('storage', storage_type, key, location, numel[, view_metadata]);
/// the zip and the legacy loaders bind such ids to bytes differently.
using PersistentLoader =
    llvm::function_ref<llvm::Expected<std::shared_ptr<Storage>>(const Value &)>;

struct Unpickled {
  ValuePtr value;
  uint64_t end; ///< offset just past the STOP opcode
};

/// Unpickles the pickle starting at `offset` of `source`. Without a
/// `loadPersistent`, persistent ids are an error.
llvm::Expected<Unpickled> unpickle(const ByteSource &source,
                                   uint64_t offset = 0,
                                   PersistentLoader loadPersistent = nullptr);

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_PICKLE_H
