//===- ShardedCheckpoint.h - checkpoints split by an index file -*- C++ -*-===//
//
// Hugging Face splits large checkpoints into shards listed by
// `model.safetensors.index.json` or `pytorch_model.bin.index.json`, whose
// `weight_map` maps each tensor name to the file holding it.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_SHARDEDCHECKPOINT_H
#define MEGATRON_FRONTENDS_READER_SHARDEDCHECKPOINT_H

#include "frontends/reader/Tensor.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <vector>

namespace megatron::reader {

/// The tensors the index lists, in its order. Shards live next to the index
/// and are safetensors files (*.safetensors) or torch.save'd state dicts;
/// each is opened once, and every name must be present in its shard.
llvm::Expected<std::vector<NamedTensor>>
loadShardedCheckpoint(llvm::StringRef indexPath);

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_SHARDEDCHECKPOINT_H
