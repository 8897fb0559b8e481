//===- StateDict.h - tensors of a nested state dict by dotted name -*- C++
//-*-===//
//
// Megatron nests its state dict ({'language_model': {'embedding':
// {'word_embeddings': {'weight': T}}}}); Hugging Face's is flat with dotted
// keys. Flattening both gives the same kind of names:
// "language_model.embedding.word_embeddings.weight".
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_STATEDICT_H
#define MEGATRON_FRONTENDS_READER_STATEDICT_H

#include "frontends/reader/Tensor.h"
#include "frontends/reader/Value.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <vector>

namespace megatron::reader {

/// Every tensor under `root`, in insertion order, named by the keys leading
/// to it joined with '.' and prefixed by `prefix` (when not empty). Dict keys
/// may be str or int; list and tuple elements are named by their index.
/// Anything that is not a tensor (None, BytesIO `_extra_state`, ints,
/// argparse.Namespace, ...) is skipped, as are items under other kinds of
/// keys. Two tensors ending up with one name is an error.
llvm::Expected<std::vector<NamedTensor>>
flattenStateDict(const Value &root, llvm::StringRef prefix = "");

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_STATEDICT_H
