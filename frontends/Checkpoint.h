//===- Checkpoint.h - one model's weights, whatever the layout -*- C++ -*-===//
//
// Opens a Megatron-LM checkpoint (directory with latest_checkpointed_iteration
// .txt, a release/ or iter_*/ folder, an mp_rank_* folder, a bare .pt, or an
// NGC zip) or a Hugging Face directory (config.json + pytorch_model.bin or
// model.safetensors, possibly sharded), and presents its tensors under their
// flattened state-dict names with tensor-parallel shards merged back into
// full tensors. Nothing is read until `read` is called.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_CHECKPOINT_H
#define MEGATRON_FRONTENDS_CHECKPOINT_H

#include "frontends/ModelConfig.h"
#include "frontends/reader/DType.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <vector>

namespace megatron {

struct TensorInfo {
  reader::DType dtype;
  llvm::SmallVector<int64_t> shape;
};

class Checkpoint {
public:
  enum class Format { MegatronLM, HuggingFace };

  static llvm::Expected<std::unique_ptr<Checkpoint>> open(llvm::StringRef path);
  ~Checkpoint();

  Format format() const { return format_; }
  const std::string &path() const { return path_; }
  /// Tensor-parallel degree the checkpoint was saved with.
  int tensorParallelSize() const { return tpSize_; }
  /// What the checkpoint itself says about the model: Megatron `args` and
  /// `checkpoint_version`, or the Hugging Face config.json.
  const ConfigLayer &storedConfig() const { return stored_; }
  /// Hugging Face `architectures` (e.g. MegatronBertForMaskedLM); empty for
  /// Megatron-LM checkpoints.
  const std::vector<std::string> &architectures() const {
    return architectures_;
  }
  /// Megatron `args.tokenizer_type`, when recorded.
  const std::string &tokenizerType() const { return tokenizerType_; }

  /// Tensor names in checkpoint order.
  const std::vector<std::string> &names() const { return names_; }
  const TensorInfo *find(llvm::StringRef name) const;
  /// Writes the full (merged) tensor in row-major order and its stored dtype.
  llvm::Error read(llvm::StringRef name, void *dst) const;

  struct Entry;

private:
  Checkpoint() = default;
  friend class CheckpointLoader;

  Format format_ = Format::MegatronLM;
  std::string path_;
  int tpSize_ = 1;
  ConfigLayer stored_;
  std::vector<std::string> architectures_;
  std::string tokenizerType_;
  std::vector<std::string> names_;
  /// Tensors hold their storage (mappings, archives) alive themselves.
  llvm::StringMap<std::unique_ptr<Entry>> entries_;
};

} // namespace megatron

#endif // MEGATRON_FRONTENDS_CHECKPOINT_H
