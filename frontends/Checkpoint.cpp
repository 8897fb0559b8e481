//===- Checkpoint.cpp - find, open and merge checkpoint files -------------===//

#include "frontends/Checkpoint.h"

#include "frontends/reader/Safetensors.h"
#include "frontends/reader/ShardedCheckpoint.h"
#include "frontends/reader/StateDict.h"
#include "frontends/reader/TorchFile.h"
#include "frontends/reader/ZipArchive.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Regex.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <map>

using namespace megatron;
using llvm::createStringError;
using llvm::formatv;
namespace fs = llvm::sys::fs;
namespace path = llvm::sys::path;

/// A full tensor: one stored tensor, or tensor-parallel shards joined along
/// `dim`. With `groups` > 1 (version-0 QKV), each shard's rows are `groups`
/// blocks and the merge joins block by block.
struct Checkpoint::Entry {
  TensorInfo info;
  std::vector<reader::TensorRef> shards;
  size_t dim = 0;
  int64_t groups = 1;
};

Checkpoint::~Checkpoint() = default;

const TensorInfo *Checkpoint::find(llvm::StringRef name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second->info;
}

llvm::Error Checkpoint::read(llvm::StringRef name, void *dst) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    return createStringError(
        formatv("checkpoint '{0}' has no tensor '{1}'", path_, name));
  const Entry &entry = *it->second;
  if (entry.shards.size() == 1)
    return entry.shards[0].read(dst);

  // View each shard as [outer, extent_s, inner] and the result as
  // [outer, sum extent_s, inner]; copy row by row of `outer`.
  size_t elem = reader::dtypeSize(entry.info.dtype);
  const auto &shape = entry.info.shape;
  int64_t outer = entry.groups, inner = 1;
  for (size_t d = 0; d < entry.dim; ++d)
    outer *= shape[d];
  for (size_t d = entry.dim + 1; d < shape.size(); ++d)
    inner *= shape[d];
  int64_t mergedExtent = shape[entry.dim] / entry.groups;
  auto *out = static_cast<uint8_t *>(dst);
  int64_t offset = 0; // within the merged extent
  for (const reader::TensorRef &shard : entry.shards) {
    int64_t extent = shard.shape[entry.dim] / entry.groups;
    std::vector<uint8_t> buffer(shard.numel() * elem);
    if (auto err = shard.read(buffer.data()))
      return err;
    size_t run = extent * inner * elem;
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(out + ((o * mergedExtent + offset) * inner) * elem,
                  buffer.data() + o * run, run);
    offset += extent;
  }
  return llvm::Error::success();
}

namespace megatron {

/// Builds a Checkpoint from whichever layout `path` holds.
class CheckpointLoader {
public:
  explicit CheckpointLoader(Checkpoint &ckpt) : ckpt(ckpt) {}

  llvm::Error load(llvm::StringRef path);

private:
  using Tensors = std::vector<reader::NamedTensor>;

  llvm::Error loadHuggingFace(llvm::StringRef dir, llvm::StringRef weights);
  llvm::Error loadMegatronDirectory(llvm::StringRef dir);
  llvm::Error loadMegatronZip(llvm::StringRef path);
  /// `ranks[i]` holds tensor-parallel rank i's model_optim_rng.pt.
  llvm::Error
  loadMegatronRanks(std::vector<std::shared_ptr<const reader::ByteSource>> ranks,
                    llvm::StringRef where);
  /// One rank's file, on its own.
  llvm::Error loadMegatronFile(llvm::StringRef file, llvm::StringRef where) {
    auto mapped = reader::MappedFile::open(file);
    if (!mapped)
      return mapped.takeError();
    return loadMegatronRanks({*mapped}, where);
  }
  llvm::Error readArgs(const reader::Value &root, llvm::StringRef where);
  void add(const std::string &name, std::unique_ptr<Checkpoint::Entry> entry);
  llvm::Expected<Tensors> loadWeightFile(llvm::StringRef file);

  Checkpoint &ckpt;
  /// The tensor-parallel degree the args record.
  Sourced<int64_t> savedTp;
};

} // namespace megatron

void CheckpointLoader::add(const std::string &name,
                           std::unique_ptr<Checkpoint::Entry> entry) {
  if (!ckpt.entries_.count(name))
    ckpt.names_.push_back(name);
  ckpt.entries_[name] = std::move(entry);
}

static std::unique_ptr<Checkpoint::Entry> single(reader::TensorRef tensor) {
  auto entry = std::make_unique<Checkpoint::Entry>();
  entry->info.dtype = tensor.dtype;
  entry->info.shape.assign(tensor.shape.begin(), tensor.shape.end());
  entry->shards.push_back(std::move(tensor));
  return entry;
}

static bool isFile(const llvm::Twine &p) { return fs::is_regular_file(p); }
static bool isDir(const llvm::Twine &p) { return fs::is_directory(p); }

static std::string join(llvm::StringRef a, llvm::StringRef b) {
  llvm::SmallString<256> p(a);
  path::append(p, b);
  return std::string(p);
}

//===----------------------------------------------------------------------===//
// Hugging Face
//===----------------------------------------------------------------------===//

llvm::Expected<CheckpointLoader::Tensors>
CheckpointLoader::loadWeightFile(llvm::StringRef file) {
  if (file.ends_with(".safetensors"))
    return reader::loadSafetensors(file);
  auto root = reader::loadTorchFile(file);
  if (!root)
    return root.takeError();
  return reader::flattenStateDict(**root);
}

llvm::Error CheckpointLoader::loadHuggingFace(llvm::StringRef dir,
                                              llvm::StringRef weights) {
  ckpt.format_ = Checkpoint::Format::HuggingFace;
  std::string configPath = join(dir, "config.json");
  if (isFile(configPath)) {
    auto parsed = readJsonFile(configPath);
    if (!parsed)
      return parsed.takeError();
    const nlohmann::json &json = *parsed;
    auto layer = parseHuggingFaceConfig(json, configPath, std::nullopt,
                                        /*strict=*/false);
    if (!layer)
      return layer.takeError();
    ckpt.stored_ = std::move(*layer);
    if (auto arch = json.find("architectures");
        arch != json.end() && arch->is_array())
      for (const auto &name : *arch)
        if (name.is_string())
          ckpt.architectures_.push_back(name.get<std::string>());
  }

  auto tensors = weights.ends_with(".index.json")
                     ? reader::loadShardedCheckpoint(weights)
                     : loadWeightFile(weights);
  if (!tensors)
    return tensors.takeError();
  for (auto &[name, tensor] : *tensors)
    add(name, single(std::move(tensor)));
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Megatron-LM
//===----------------------------------------------------------------------===//

namespace {
/// How Megatron splits a tensor across tensor-parallel ranks.
enum class Split { Replicated, Rows, Columns };

Split splitOf(llvm::StringRef name) {
  static const llvm::Regex rows(
      "(query_key_value\\.(weight|bias)|dense_h_to_4h\\.(weight|bias)|"
      "word_embeddings\\.weight|output_layer\\.weight|^lm_head\\.bias)$");
  static const llvm::Regex columns(
      "((self_)?attention\\.dense\\.weight|dense_4h_to_h\\.weight)$");
  if (rows.match(name))
    return Split::Rows;
  if (columns.match(name))
    return Split::Columns;
  return Split::Replicated;
}

std::string shapeText(llvm::ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (auto [i, d] : llvm::enumerate(shape))
    text += (i ? ", " : "") + std::to_string(d);
  return text + "]";
}

/// `mp_rank_XX` or `mp_rank_XX_YYY` (tensor rank XX, pipeline stage YYY).
std::string rankDir(int64_t rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "mp_rank_%02lld",
                static_cast<long long>(rank));
  return name;
}

bool parseRankDir(llvm::StringRef name, unsigned &tp, unsigned &pp) {
  if (!name.consume_front("mp_rank_") || name.size() < 2 ||
      name.take_front(2).getAsInteger(10, tp))
    return false;
  name = name.drop_front(2);
  pp = 0;
  return name.empty() ||
         (name.consume_front("_") && !name.getAsInteger(10, pp));
}
} // namespace

llvm::Error CheckpointLoader::readArgs(const reader::Value &root,
                                       llvm::StringRef where) {
  ConfigLayer &layer = ckpt.stored_;
  std::string source = (where + " args").str();
  if (const reader::Value *version = root.dictGet("checkpoint_version")) {
    std::optional<double> number = version->asFloat();
    if (!number)
      return createStringError(
          formatv("{0}: checkpoint_version is {1}, not a number", where,
                  version->describe()));
    layer.checkpointVersion.setIfUnset(*number,
                                       where.str() + " checkpoint_version");
  }
  const reader::Value *args = root.dictGet("args");
  if (!args || args->isNone())
    return llvm::Error::success();
  auto integer = [&](const char *key, Sourced<int64_t> &field) {
    if (const reader::Value *v = args->attr(key))
      if (std::optional<int64_t> i = v->asInt())
        field.setIfUnset(*i, source);
  };
  auto flag = [&](const char *key) {
    const reader::Value *v = args->attr(key);
    return v && v->asBool().value_or(false);
  };
  auto text = [&](const char *key) -> std::string {
    const reader::Value *v = args->attr(key);
    return v && v->asString() ? v->asString()->str() : std::string();
  };
  integer("hidden_size", layer.hiddenSize);
  integer("num_layers", layer.numLayers);
  integer("num_attention_heads", layer.numHeads);
  integer("ffn_hidden_size", layer.ffnSize);
  integer("max_position_embeddings", layer.maxPositions);
  integer("padded_vocab_size", layer.paddedVocabSize);
  // Megatron-LM called it model_parallel_size before pipeline parallelism.
  integer("tensor_model_parallel_size", savedTp);
  integer("model_parallel_size", savedTp);
  if (const reader::Value *eps = args->attr("layernorm_epsilon"))
    if (std::optional<double> value = eps->asFloat())
      layer.layerNormEps.setIfUnset(*value, source);
  // Megatron's MLP GELU is the fused tanh form unless both are off; the
  // BERT LM head uses erf unless openai_gelu.
  if (args->attr("bias_gelu_fusion") || args->attr("openai_gelu")) {
    bool openai = flag("openai_gelu");
    layer.gelu.setIfUnset(
        flag("bias_gelu_fusion") || openai ? GeluKind::Tanh : GeluKind::Erf,
        source);
    layer.headGelu.setIfUnset(openai ? GeluKind::Tanh : GeluKind::Erf, source);
  }
  ckpt.tokenizerType_ = text("tokenizer_type");

  // Variants of the architecture the importer does not express.
  auto refuse = [&](llvm::StringRef what) {
    return createStringError(
        formatv("{0}: {1} is not supported (only the Megatron-BERT / GPT-2 "
                "architecture: pre-LayerNorm, learned absolute positions, "
                "GELU MLP, multi-head attention)",
                source, what));
  };
  if (flag("apply_residual_connection_post_layernorm"))
    return refuse("apply_residual_connection_post_layernorm");
  if (std::string pe = text("position_embedding_type");
      !pe.empty() && pe != "learned_absolute")
    return refuse("position_embedding_type '" + pe + "'");
  if (std::string norm = text("normalization"); !norm.empty() && norm != "LayerNorm")
    return refuse("normalization '" + norm + "'");
  if (flag("swiglu"))
    return refuse("swiglu");
  if (flag("group_query_attention"))
    return refuse("group_query_attention");
  if (const reader::Value *bias = args->attr("add_bias_linear");
      bias && bias->asBool() == false)
    return refuse("add_bias_linear = False");
  return llvm::Error::success();
}

llvm::Error CheckpointLoader::loadMegatronRanks(
    std::vector<std::shared_ptr<const reader::ByteSource>> ranks,
    llvm::StringRef where) {
  ckpt.format_ = Checkpoint::Format::MegatronLM;
  ckpt.tpSize_ = static_cast<int>(ranks.size());
  std::vector<Tensors> perRank;
  for (auto [rank, source] : llvm::enumerate(ranks)) {
    auto loaded = reader::loadTorchFile(source);
    if (!loaded)
      return loaded.takeError();
    const reader::Value &root = **loaded;
    if (!root.isDict())
      return createStringError(formatv(
          "{0}: expected a dict at the top of the checkpoint, found {1}",
          source->describe(), root.describe()));
    if (rank == 0)
      if (auto err = readArgs(root, source->describe()))
        return err;
    const reader::Value *model = root.dictGet("model");
    if (!model)
      model = root.dictGet("module");
    if (!model || !model->isDict())
      return createStringError(formatv(
          "{0}: no 'model' state dict in this checkpoint", source->describe()));
    auto tensors = reader::flattenStateDict(*model);
    if (!tensors)
      return tensors.takeError();
    perRank.push_back(std::move(*tensors));
  }

  // The saved tensor-parallel degree must match the ranks found.
  if (savedTp && *savedTp != static_cast<int64_t>(ranks.size())) {
    std::string missing;
    for (int64_t r = ranks.size(); r < *savedTp; ++r)
      missing += (missing.empty() ? "" : ", ") + rankDir(r);
    return createStringError(formatv(
        "{0} says tensor_model_parallel_size = {1}, but {2} holds {3} rank(s); "
        "missing {4}",
        savedTp.source, *savedTp, where, ranks.size(),
        missing.empty() ? std::string("none (too many ranks)") : missing));
  }

  bool v0 = !ckpt.stored_.checkpointVersion ||
            *ckpt.stored_.checkpointVersion == 0;
  std::vector<llvm::StringMap<const reader::TensorRef *>> byName(perRank.size());
  for (size_t rank = 0; rank < perRank.size(); ++rank)
    for (const reader::NamedTensor &t : perRank[rank])
      byName[rank][t.name] = &t.tensor;
  for (auto &[name, first] : perRank[0]) {
    auto entry = std::make_unique<Checkpoint::Entry>();
    entry->info.dtype = first.dtype;
    entry->info.shape.assign(first.shape.begin(), first.shape.end());
    Split split = ranks.size() == 1 ? Split::Replicated : splitOf(name);
    entry->dim = split == Split::Columns ? 1 : 0;
    // Version-0 QKV keeps each rank's rows as [3, local heads, head_dim].
    if (v0 && llvm::StringRef(name).contains("query_key_value"))
      entry->groups = 3;
    for (size_t rank = 0; rank < perRank.size(); ++rank) {
      auto it = byName[rank].find(name);
      if (it == byName[rank].end())
        return createStringError(formatv(
            "tensor-parallel rank {0} of {1} has no tensor '{2}' (rank 0 has)",
            rank, where, name));
      const reader::TensorRef &shard = *it->second;
      bool ok = shard.dtype == first.dtype &&
                shard.shape.size() == first.shape.size();
      for (size_t d = 0; ok && d < shard.shape.size(); ++d)
        ok = split != Split::Replicated && d == entry->dim
                 ? shard.shape[d] % entry->groups == 0
                 : shard.shape[d] == first.shape[d];
      if (!ok)
        return createStringError(formatv(
            "tensor-parallel shards of '{0}' do not fit together: rank 0 has "
            "{1} {2}, rank {3} has {4} {5} ({6})",
            name, reader::dtypeName(first.dtype), shapeText(first.shape),
            rank, reader::dtypeName(shard.dtype), shapeText(shard.shape),
            split == Split::Replicated ? "replicated tensor"
            : split == Split::Rows     ? "split along dim 0"
                                       : "split along dim 1"));
      if (rank > 0 && split != Split::Replicated)
        entry->info.shape[entry->dim] += shard.shape[entry->dim];
      if (rank == 0 || split != Split::Replicated)
        entry->shards.push_back(shard);
    }
    add(name, std::move(entry));
  }
  for (size_t rank = 1; rank < perRank.size(); ++rank)
    if (perRank[rank].size() != perRank[0].size())
      return createStringError(formatv(
          "tensor-parallel rank {0} of {1} has {2} tensors, rank 0 has {3}",
          rank, where, perRank[rank].size(), perRank[0].size()));
  return llvm::Error::success();
}

/// Loads every `mp_rank_*` folder of one iteration folder.
llvm::Error CheckpointLoader::loadMegatronDirectory(llvm::StringRef dir) {
  std::map<unsigned, std::string> ranks;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec)) {
    unsigned tp, pp;
    llvm::StringRef name = path::filename(it->path());
    if (!parseRankDir(name, tp, pp))
      continue;
    if (pp != 0)
      return createStringError(formatv(
          "'{0}' is a pipeline-parallel checkpoint ({1}); only one pipeline "
          "stage is supported",
          dir, name));
    std::string file = join(it->path(), "model_optim_rng.pt");
    if (!isFile(file))
      return createStringError(
          formatv("'{0}' has no model_optim_rng.pt", it->path()));
    ranks[tp] = file;
  }
  if (ec)
    return createStringError(
        formatv("cannot list '{0}': {1}", dir, ec.message()));
  if (ranks.empty())
    return createStringError(
        formatv("'{0}' holds no mp_rank_* folders", dir));
  std::vector<std::shared_ptr<const reader::ByteSource>> sources;
  for (auto [rank, file] : ranks) {
    if (rank != sources.size())
      return createStringError(formatv(
          "'{0}' has no {1} folder (tensor-parallel ranks must be 0..{2})",
          dir, rankDir(sources.size()), ranks.size() - 1));
    auto mapped = reader::MappedFile::open(file);
    if (!mapped)
      return mapped.takeError();
    sources.push_back(*mapped);
  }
  return loadMegatronRanks(std::move(sources), dir);
}

/// An NGC-style zip holding `.../mp_rank_XX/model_optim_rng.pt` files.
llvm::Error CheckpointLoader::loadMegatronZip(llvm::StringRef zipPath) {
  auto zip = reader::ZipArchive::open(zipPath);
  if (!zip)
    return zip.takeError();
  std::map<unsigned, std::string> ranks;
  for (const std::string &entry : (*zip)->entryNames()) {
    llvm::StringRef name(entry);
    if (!name.consume_back("/model_optim_rng.pt"))
      continue;
    unsigned tp, pp;
    if (!parseRankDir(path::filename(name, path::Style::posix), tp, pp))
      continue;
    if (pp != 0)
      return createStringError(formatv(
          "'{0}' holds a pipeline-parallel checkpoint ({1}); only one "
          "pipeline stage is supported",
          zipPath, entry));
    if (ranks.count(tp))
      return createStringError(formatv(
          "'{0}' holds more than one checkpoint for tensor-parallel rank {1}",
          zipPath, tp));
    ranks[tp] = entry;
  }
  if (ranks.empty())
    return createStringError(formatv(
        "'{0}' is neither a PyTorch checkpoint nor a zip of Megatron-LM "
        "mp_rank_*/model_optim_rng.pt files",
        zipPath));
  std::vector<std::shared_ptr<const reader::ByteSource>> sources;
  for (auto [rank, entry] : ranks) {
    if (rank != sources.size())
      return createStringError(formatv(
          "'{0}' has no {1}/model_optim_rng.pt", zipPath,
          rankDir(sources.size())));
    auto source = (*zip)->openEntry(entry);
    if (!source)
      return source.takeError();
    sources.push_back(*source);
  }
  return loadMegatronRanks(std::move(sources), zipPath);
}

llvm::Error CheckpointLoader::load(llvm::StringRef input) {
  ckpt.path_ = input.str();
  if (!fs::exists(input))
    return createStringError(formatv("'{0}' does not exist", input));

  if (isFile(input)) {
    if (input.ends_with(".safetensors") || input.ends_with(".index.json"))
      return loadHuggingFace(path::parent_path(input), input);
    // A PyTorch file (zip or legacy) is one Megatron rank; a zip that is not
    // a PyTorch file may be an NGC archive of rank files.
    auto zip = reader::ZipArchive::open(input);
    bool torchZip =
        zip && llvm::any_of((*zip)->entryNames(), [](const std::string &e) {
          return llvm::StringRef(e).ends_with("data.pkl");
        });
    if (zip && !torchZip) {
      zip->reset();
      return loadMegatronZip(input);
    }
    llvm::consumeError(zip.takeError());
    return loadMegatronFile(input, input);
  }

  if (!isDir(input))
    return createStringError(
        formatv("'{0}' is neither a file nor a directory", input));
  // Hugging Face: config.json beside the weights.
  for (const char *weights :
       {"model.safetensors.index.json", "model.safetensors",
        "pytorch_model.bin.index.json", "pytorch_model.bin"}) {
    std::string file = join(input, weights);
    if (isFile(file))
      return loadHuggingFace(input, file);
  }
  // One rank's folder.
  if (std::string file = join(input, "model_optim_rng.pt"); isFile(file)) {
    return loadMegatronFile(file, input);
  }
  // The checkpoint root: the tracker file names the iteration folder.
  std::string tracker = join(input, "latest_checkpointed_iteration.txt");
  if (isFile(tracker)) {
    auto buffer = llvm::MemoryBuffer::getFile(tracker);
    if (!buffer)
      return createStringError(formatv("cannot read '{0}': {1}", tracker,
                                       buffer.getError().message()));
    llvm::StringRef tag = (*buffer)->getBuffer().trim();
    unsigned iteration;
    std::string folder;
    if (tag == "release") {
      folder = "release";
    } else if (!tag.getAsInteger(10, iteration)) {
      char name[32];
      std::snprintf(name, sizeof(name), "iter_%07u", iteration);
      folder = name;
    } else
      return createStringError(formatv(
          "'{0}' must hold 'release' or an iteration number, not '{1}'",
          tracker, tag.take_front(40)));
    std::string iterDir = join(input, folder);
    if (!isDir(iterDir))
      return createStringError(formatv(
          "'{0}' names {1}, but '{2}' does not exist", tracker, tag, iterDir));
    return loadMegatronDirectory(iterDir);
  }
  return loadMegatronDirectory(input);
}

llvm::Expected<std::unique_ptr<Checkpoint>>
Checkpoint::open(llvm::StringRef path) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  CheckpointLoader loader(*ckpt);
  if (auto err = loader.load(path))
    return std::move(err);
  return ckpt;
}
