//===- ShardedCheckpoint.cpp - checkpoints split by an index file ---------===//

#include "frontends/reader/ShardedCheckpoint.h"

#include "frontends/reader/Safetensors.h"
#include "frontends/reader/StateDict.h"
#include "frontends/reader/TorchFile.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Path.h"

#include <nlohmann/json.hpp>

using namespace megatron::reader;
using llvm::createStringError;
using Json = nlohmann::ordered_json; // keeps the index's order

constexpr uint64_t kMaxIndexBytes = 64ull << 20;

/// Shard names are plain relative paths; anything that could point outside
/// the checkpoint's folder is refused.
static bool isSafeRelativePath(llvm::StringRef file) {
  if (file.empty() || llvm::sys::path::is_absolute(file))
    return false;
  for (llvm::StringRef part : llvm::make_range(llvm::sys::path::begin(file),
                                               llvm::sys::path::end(file)))
    if (part == "..")
      return false;
  return true;
}

static llvm::Expected<std::vector<NamedTensor>>
loadShard(llvm::StringRef path) {
  if (path.ends_with(".safetensors"))
    return loadSafetensors(path);
  auto root = loadTorchFile(path);
  if (!root)
    return root.takeError();
  return flattenStateDict(**root);
}

llvm::Expected<std::vector<NamedTensor>>
megatron::reader::loadShardedCheckpoint(llvm::StringRef indexPath) {
  auto file = MappedFile::open(indexPath);
  if (!file)
    return file.takeError();
  auto text = readAll(**file, kMaxIndexBytes);
  if (!text)
    return text.takeError();
  Json index = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object())
    return createStringError(indexPath + ": not a JSON object");
  auto weightMap = index.find("weight_map");
  if (weightMap == index.end() || !weightMap->is_object())
    return createStringError(indexPath + ": no weight_map object");

  llvm::StringRef folder = llvm::sys::path::parent_path(indexPath);
  llvm::StringMap<llvm::StringMap<TensorRef>> shards;
  std::vector<NamedTensor> tensors;
  for (const auto &[name, shardJson] : weightMap->items()) {
    if (!shardJson.is_string() ||
        !isSafeRelativePath(shardJson.get_ref<const std::string &>()))
      return createStringError(indexPath + ": tensor '" + name + "' maps to " +
                               shardJson.dump() +
                               ", not a file next to the index");
    const std::string &shardName = shardJson.get_ref<const std::string &>();
    llvm::SmallString<256> shardPath(folder);
    llvm::sys::path::append(shardPath, shardName);

    auto [shard, firstUse] = shards.try_emplace(shardName);
    if (firstUse) {
      auto loaded = loadShard(shardPath);
      if (!loaded)
        return loaded.takeError();
      for (NamedTensor &tensor : *loaded)
        shard->second.try_emplace(tensor.name, std::move(tensor.tensor));
    }
    auto found = shard->second.find(name);
    if (found == shard->second.end())
      return createStringError(indexPath + ": tensor '" + name +
                               "' is not in " + shardPath);
    tensors.push_back(NamedTensor{name, found->second});
  }
  return tensors;
}
