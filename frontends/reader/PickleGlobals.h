//===- PickleGlobals.h - the globals a checkpoint pickle may name -*- C++
//-*-===//
//
// A pickle refers to Python callables by module and name (GLOBAL) and calls
// them (REDUCE, NEWOBJ). Only the names on one allow-list resolve, and
// "calling" one never runs code: each allowed global has a fixed meaning as
// data (collections.OrderedDict() is an empty Dict, _rebuild_tensor_v2 makes
// a TensorRef, argparse.Namespace() an opaque Object, ...).
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_PICKLEGLOBALS_H
#define MEGATRON_FRONTENDS_READER_PICKLEGLOBALS_H

#include "frontends/reader/Value.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>

namespace megatron::reader {

/// A Global value for module.name, or an error ("refusing global
/// 'posix.system'") when it is not on the allow-list.
llvm::Expected<std::shared_ptr<Value>> resolveGlobal(llvm::StringRef module,
                                                     llvm::StringRef name);

/// The value that calling `callable` (a Global from resolveGlobal) with
/// `args` (a Tuple) stands for.
llvm::Expected<std::shared_ptr<Value>> callGlobal(const Value &callable,
                                                  ValuePtr args);

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_PICKLEGLOBALS_H
