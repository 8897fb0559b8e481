//===- Artifact.cpp - a verified, memory-mapped .mtc file -----------------===//

#include "megatron/runtime/Artifact.h"

#include "megatron/runtime/ArtifactFormat.h"
#include "runtime/DTypes.h"
#include "runtime/schema/artifact_generated.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace megatron::runtime;
namespace fb = megatron::artifact;

namespace {

std::string str(uint64_t v) { return std::to_string(v); }

/// [offset, offset + size) lies within [0, limit), without overflow.
bool fits(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}


/// Every buffer of `rank` within its region, and weights of their exact size.
Status checkRank(const fb::Rank &rank, uint32_t index, uint64_t weightsSize,
                 const std::string &where) {
  std::string name = where + ": rank " + str(index);
  if (!fits(rank.weights_offset(), rank.weights_size(), weightsSize))
    return Status::error(name + ": weight region [" +
                         str(rank.weights_offset()) + ", +" +
                         str(rank.weights_size()) +
                         ") lies outside the weight segment of " +
                         str(weightsSize) + " bytes");
  if (rank.weights_offset() % kWeightAlignment != 0)
    return Status::error(name + ": weight region offset " +
                         str(rank.weights_offset()) + " is not " +
                         str(kWeightAlignment) + "-byte aligned");
  if (!rank.buffers())
    return Status::error(name + ": no buffers");
  for (const fb::Buffer *buffer : *rank.buffers()) {
    std::string what =
        name + " buffer '" +
        (buffer->name() ? buffer->name()->str() : std::string("?")) + "'";
    if (elementSize(buffer->dtype()) == 0)
      return Status::error(what + ": unknown dtype");
    bool weight = buffer->kind() == fb::BufferKind::Weight;
    uint64_t limit = weight ? rank.weights_size() : rank.arena_size();
    if (buffer->offset() % elementSize(buffer->dtype()) != 0)
      return Status::error(what + ": offset " + str(buffer->offset()) +
                           " is not aligned to its elements");
    if (!fits(buffer->offset(), buffer->size(), limit))
      return Status::error(what + ": bytes [" + str(buffer->offset()) +
                           ", +" + str(buffer->size()) + ") lie outside its " +
                           (weight ? "weight region" : "arena") + " of " +
                           str(limit) + " bytes");
    if (!weight)
      continue;
    // A weight's shape is static: its bytes must be exactly its size.
    if (!buffer->shape())
      return Status::error(what + ": a weight needs a shape");
    uint64_t elements = 1;
    for (const fb::Dim *dim : *buffer->shape()) {
      if ((dim->symbols() && dim->symbols()->size()) || dim->constant() < 0 ||
          (dim->constant() > 0 &&
           elements > UINT64_MAX / static_cast<uint64_t>(dim->constant())))
        return Status::error(what + ": a weight needs a static shape");
      elements *= static_cast<uint64_t>(dim->constant());
    }
    if (elements > UINT64_MAX / elementSize(buffer->dtype()) ||
        elements * elementSize(buffer->dtype()) != buffer->size())
      return Status::error(what + ": shape and dtype need " +
                           str(elements * elementSize(buffer->dtype())) +
                           " bytes, the buffer has " + str(buffer->size()));
  }
  uint32_t buffers = rank.buffers()->size();
  if (!rank.entries())
    return Status::success();
  for (const fb::Entry *entry : *rank.entries()) {
    std::vector<const flatbuffers::Vector<uint32_t> *> lists = {
        entry->inputs(), entry->outputs()};
    if (entry->steps())
      for (const fb::Step *step : *entry->steps()) {
        lists.push_back(step->inputs());
        lists.push_back(step->outputs());
      }
    for (const auto *list : lists)
      if (list)
        for (uint32_t id : *list)
          if (id >= buffers)
            return Status::error(
                name + " entry '" +
                (entry->name() ? entry->name()->str() : std::string("?")) +
                "' uses buffer " + str(id) + " of " + str(buffers));
  }
  return Status::success();
}
} // namespace

Artifact::~Artifact() {
  if (data_)
    munmap(const_cast<uint8_t *>(data_), size_);
}

const uint8_t *Artifact::weights(uint32_t rank) const {
  return data_ + weightsOffset_ + root_->ranks()->Get(rank)->weights_offset();
}

void Artifact::evict(const uint8_t *begin, uint64_t bytes) const {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page,
                  last = (reinterpret_cast<uintptr_t>(begin) + bytes) / page * page;
  // Advice only: where the kernel declines, the pages simply stay.
  if (begin >= data_ && begin + bytes <= data_ + size_ && first < last)
    madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
}

Status Artifact::open(const std::string &path, std::unique_ptr<Artifact> &out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::error("cannot open artifact '" + path +
                         "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error("'" + path + "' is not a regular file");
  }
  std::unique_ptr<Artifact> artifact(new Artifact());
  artifact->path_ = path;
  artifact->size_ = static_cast<uint64_t>(st.st_size);
  if (artifact->size_ < sizeof(ArtifactHeader)) {
    ::close(fd);
    return Status::error("'" + path + "' is too short to be an artifact (" +
                         str(artifact->size_) + " bytes)");
  }
  void *mapped = mmap(nullptr, artifact->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED)
    return Status::error("cannot map '" + path + "': " + std::strerror(errno));
  artifact->data_ = static_cast<const uint8_t *>(mapped);

  ArtifactHeader header;
  std::memcpy(&header, artifact->data_, sizeof(header));
  if (std::memcmp(header.magic, kArtifactMagic, sizeof(kArtifactMagic)) != 0)
    return Status::error("'" + path + "' is not a megatron-compiler artifact");
  if (header.formatVersion != kArtifactFormatVersion)
    return Status::error("'" + path + "' has artifact format version " +
                         str(header.formatVersion) + "; this runtime reads " +
                         str(kArtifactFormatVersion) +
                         " (recompile it, or use a matching runtime)");
  if (header.headerSize != sizeof(ArtifactHeader) ||
      !fits(header.flatbufferOffset, header.flatbufferSize, artifact->size_) ||
      !fits(header.weightsOffset, header.weightsSize, artifact->size_) ||
      header.weightsOffset % kWeightAlignment != 0)
    return Status::error("'" + path +
                         "' is truncated or corrupt: its header describes "
                         "sections beyond the file's " +
                         str(artifact->size_) + " bytes");

  const uint8_t *fbData = artifact->data_ + header.flatbufferOffset;
  flatbuffers::Verifier verifier(fbData, header.flatbufferSize);
  if (!fb::VerifyArtifactBuffer(verifier))
    return Status::error("'" + path +
                         "' is corrupt: its FlatBuffer does not verify");
  artifact->root_ = fb::GetArtifact(fbData);
  artifact->weightsOffset_ = header.weightsOffset;
  const fb::Artifact &root = *artifact->root_;
  if (!root.model() || !root.ranks() || root.ranks()->size() == 0)
    return Status::error("'" + path + "' has no model description or ranks");
  for (uint32_t i = 0; i < root.ranks()->size(); ++i)
    if (Status status =
            checkRank(*root.ranks()->Get(i), i, header.weightsSize, path);
        !status.ok())
      return status;
  out = std::move(artifact);
  return Status::success();
}

std::string Artifact::architecture() const {
  const auto *model = root_->model();
  return model && model->architecture() ? model->architecture()->str() : "";
}

std::string Artifact::task() const {
  const auto *model = root_->model();
  return model && model->task() ? model->task()->str() : "";
}

Status Artifact::tokenizer(std::unique_ptr<Tokenizer> &out) const {
  const auto *model = root_->model();
  const fb::Tokenizer *t = model ? model->tokenizer() : nullptr;
  if (!t || !t->vocab())
    return Status::error(path_ + " has no tokenizer: compile it with --vocab FILE "
                         "[--merges FILE], or with vocab.txt (BERT) or vocab.json + "
                         "merges.txt (GPT-2) next to the checkpoint");
  TokenizerSpec spec;
  spec.kind = t->kind() == fb::TokenizerKind::WordPiece
                  ? TokenizerSpec::Kind::WordPiece
                  : TokenizerSpec::Kind::ByteLevelBpe;
  for (const auto *s : *t->vocab())
    spec.vocab.push_back(s ? s->str() : "");
  if (t->merges())
    for (const auto *s : *t->merges())
      spec.merges.push_back(s ? s->str() : "");
  spec.lowercase = t->lowercase();
  spec.stripAccents = t->strip_accents();
  spec.maxCharsPerWord = t->max_chars_per_word();
  auto text = [](const flatbuffers::String *s) { return s ? s->str() : std::string(); };
  spec.unkToken = text(t->unk_token());
  spec.clsToken = text(t->cls_token());
  spec.sepToken = text(t->sep_token());
  spec.padToken = text(t->pad_token());
  spec.maskToken = text(t->mask_token());
  spec.eosToken = text(t->eos_token());
  if (Status s = Tokenizer::create(std::move(spec), out); !s.ok())
    return Status::error(path_ + ": the embedded tokenizer: " + s.message());
  return Status::success();
}

int Artifact::ranks() const { return static_cast<int>(root_->ranks()->size()); }

std::map<std::string, uint64_t> Artifact::weightBytes() const {
  std::map<std::string, uint64_t> bytes;
  for (const fb::Rank *rank : *root_->ranks())
    for (const fb::Buffer *b : *rank->buffers())
      if (b->kind() == fb::BufferKind::Weight) {
        // Lower case, as the command line spells them.
        std::string name = fb::EnumNameDType(b->dtype());
        for (char &c : name)
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        bytes[name] += b->size();
      }
  return bytes;
}

std::vector<KernelModuleInfo> Artifact::kernelModules() const {
  std::vector<KernelModuleInfo> out;
  if (const auto *modules = root_->kernels())
    for (const fb::KernelModule *m : *modules) {
      KernelModuleInfo info;
      info.arch = m->arch() ? m->arch()->str() : "";
      info.ptx = m->ptx() ? m->ptx()->str() : "";
      if (m->kernels())
        for (const auto *k : *m->kernels())
          info.kernels.push_back(k ? k->str() : "");
      if (m->parameters())
        info.parameters.assign(m->parameters()->begin(), m->parameters()->end());
      out.push_back(std::move(info));
    }
  return out;
}
