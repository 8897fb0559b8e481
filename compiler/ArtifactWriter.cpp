//===- ArtifactWriter.cpp - plan module -> .mtc file ----------------------===//

#include "compiler/ArtifactWriter.h"

#include "compiler/WeightEvaluator.h"
#include "dialects/megatron/MegatronOps.h"
#include "dialects/plan/PlanDialect.h"
#include "megatron/runtime/ArtifactFormat.h"
#include "megatron/runtime/Half.h"
#include "runtime/schema/artifact_generated.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

using namespace megatron;
using llvm::createStringError;
using llvm::formatv;
namespace fb = megatron::artifact;
namespace plan = mlir::plan;

namespace {

llvm::Expected<fb::DType> dtypeOf(mlir::Type type) {
  if (type.isF32())
    return fb::DType::F32;
  if (type.isF16())
    return fb::DType::F16;
  if (type.isBF16())
    return fb::DType::BF16;
  if (type.isInteger(64))
    return fb::DType::I64;
  if (type.isInteger(32))
    return fb::DType::I32;
  if (type.isInteger(8))
    return fb::DType::I8;
  std::string text;
  llvm::raw_string_ostream(text) << type;
  return createStringError("no artifact dtype for " + text);
}

/// The module's megatron.config as JSON, for the runtime and for users.
std::string configJson(mlir::DictionaryAttr config) {
  nlohmann::json json = nlohmann::json::object();
  for (mlir::NamedAttribute item : config) {
    std::string key = item.getName().str();
    mlir::Attribute v = item.getValue();
    if (auto b = mlir::dyn_cast<mlir::BoolAttr>(v))
      json[key] = b.getValue();
    else if (auto i = mlir::dyn_cast<mlir::IntegerAttr>(v))
      json[key] = i.getInt();
    else if (auto f = mlir::dyn_cast<mlir::FloatAttr>(v))
      json[key] = f.getValueAsDouble();
    else if (auto s = mlir::dyn_cast<mlir::StringAttr>(v))
      json[key] = s.str();
    else if (auto a = mlir::dyn_cast<mlir::ArrayAttr>(v))
      for (mlir::Attribute e : a)
        if (auto s = mlir::dyn_cast<mlir::StringAttr>(e))
          json[key].push_back(s.str());
  }
  // Strings from a checkpoint's pickled args are not checked to be UTF-8.
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class Writer {
public:
  Writer(mlir::ModuleOp module, const Checkpoint &ckpt,
         const runtime::TokenizerSpec *tokenizerSpec, llvm::ArrayRef<PtxModule> ptx)
      : module(module), ckpt(ckpt), tokenizerSpec(tokenizerSpec), ptx(ptx) {}
  llvm::Error write(llvm::StringRef path);

private:
  llvm::Expected<flatbuffers::Offset<fb::Rank>> rank(plan::RankOp op);
  llvm::Error streamWeights(llvm::raw_fd_ostream &os, uint64_t segmentStart);
  flatbuffers::Offset<fb::Tokenizer> tokenizer();
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>>
  labels(mlir::DictionaryAttr config);

  mlir::ModuleOp module;
  const Checkpoint &ckpt;
  const runtime::TokenizerSpec *tokenizerSpec;
  llvm::ArrayRef<PtxModule> ptx;
  flatbuffers::FlatBufferBuilder fbb;
  /// Where each rank's weight region starts in the weight segment.
  std::vector<uint64_t> regionOffsets;
  uint64_t nextRegion = 0;
};

llvm::Expected<flatbuffers::Offset<fb::Rank>> Writer::rank(plan::RankOp op) {
  llvm::StringMap<uint32_t> index;
  std::vector<flatbuffers::Offset<fb::Buffer>> buffers;
  uint64_t weightBytes = 0;
  auto dims = [&](llvm::ArrayRef<plan::DimExpr> shape) {
    std::vector<flatbuffers::Offset<fb::Dim>> out;
    for (const plan::DimExpr &d : shape) {
      std::vector<fb::Symbol> symbols;
      for (unsigned s : d.symbols)
        symbols.push_back(static_cast<fb::Symbol>(s));
      out.push_back(fb::CreateDimDirect(fbb, d.constant, &symbols));
    }
    return fbb.CreateVector(out);
  };
  for (mlir::Operation &item : op.getBody().front()) {
    std::string name;
    flatbuffers::Offset<fb::Buffer> buffer;
    if (auto w = mlir::dyn_cast<plan::WeightOp>(item)) {
      auto dtype = dtypeOf(w.getStorageType());
      if (!dtype)
        return dtype.takeError();
      llvm::SmallVector<plan::DimExpr> shape;
      for (int64_t d : mlir::cast<mlir::RankedTensorType>(w.getType()).getShape())
        shape.push_back(plan::DimExpr{d, {}});
      name = w.getSymName().str();
      buffer = fb::CreateBuffer(fbb, fbb.CreateString(name), fb::BufferKind::Weight,
                                *dtype, dims(shape), w.getOffset(), w.getSize());
      weightBytes = std::max<uint64_t>(weightBytes, w.getOffset() + w.getSize());
    } else if (auto b = mlir::dyn_cast<plan::BufferOp>(item)) {
      auto dtype = dtypeOf(b.getElementType());
      if (!dtype)
        return dtype.takeError();
      llvm::SmallVector<plan::DimExpr> shape;
      for (auto dim : b.getShape().getAsValueRange<mlir::StringAttr>())
        shape.push_back(*plan::parseDim(dim)); // the verifier parsed it
      name = b.getSymName().str();
      buffer = fb::CreateBuffer(fbb, fbb.CreateString(name),
                                static_cast<fb::BufferKind>(b.getKind()), *dtype,
                                dims(shape), b.getOffset(), b.getSize());
    } else {
      continue;
    }
    index[name] = buffers.size();
    buffers.push_back(buffer);
  }

  auto indices = [&](mlir::ArrayAttr refs) {
    std::vector<uint32_t> ids;
    for (auto ref : refs.getAsRange<mlir::FlatSymbolRefAttr>())
      ids.push_back(index.lookup(ref.getValue()));
    return fbb.CreateVector(ids);
  };
  std::vector<flatbuffers::Offset<fb::Entry>> entries;
  for (auto entry : op.getBody().getOps<plan::EntryOp>()) {
    std::vector<flatbuffers::Offset<fb::Step>> steps;
    for (auto step : entry.getBody().getOps<plan::StepOp>()) {
      std::vector<int64_t> ints(step.getInts().begin(), step.getInts().end());
      std::vector<double> floats(step.getFloats().begin(), step.getFloats().end());
      auto in = indices(step.getInputs()), out = indices(step.getOutputs());
      steps.push_back(fb::CreateStep(fbb, static_cast<fb::StepKind>(step.getKind()),
                                     in, out, fbb.CreateVector(ints),
                                     fbb.CreateVector(floats)));
    }
    auto name = fbb.CreateString(entry.getSymName().str());
    auto in = indices(entry.getInputs()), out = indices(entry.getOutputs());
    entries.push_back(fb::CreateEntry(fbb, name, in, out, fbb.CreateVector(steps)));
  }
  uint64_t regionOffset = nextRegion;
  regionOffsets.push_back(regionOffset);
  nextRegion = (regionOffset + weightBytes + runtime::kWeightAlignment - 1) /
               runtime::kWeightAlignment * runtime::kWeightAlignment;
  auto bufferVector = fbb.CreateVector(buffers);
  auto entryVector = fbb.CreateVector(entries);
  return fb::CreateRank(fbb, bufferVector, entryVector, op.getArenaSize(),
                        regionOffset, weightBytes);
}

llvm::Error Writer::streamWeights(llvm::raw_fd_ostream &os, uint64_t segmentStart) {
  uint64_t position = segmentStart;
  for (auto [rankIndex, rankOp] : llvm::enumerate(module.getOps<plan::RankOp>())) {
    for (auto weight : rankOp.getBody().getOps<plan::WeightOp>()) {
      auto value = evaluateWeight(weight.getValue(), ckpt);
      if (!value)
        return createStringError(formatv("weight @{0}: {1}", weight.getSymName(),
                                         llvm::toString(value.takeError())));
      uint64_t target = segmentStart + regionOffsets[rankIndex] + weight.getOffset();
      os.write_zeros(target - position);
      mlir::Type storage = weight.getStorageType();
      if (storage.isF32()) {
        os.write(reinterpret_cast<const char *>(value->data.data()),
                 value->data.size() * sizeof(float));
      } else if (storage.isInteger(8)) {
        // Quantized values: integers in [-127, 127] already.
        std::vector<int8_t> bytes(value->data.begin(), value->data.end());
        os.write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
      } else {
        std::vector<uint16_t> narrow(value->data.size());
        for (size_t i = 0; i < narrow.size(); ++i)
          narrow[i] = storage.isF16() ? runtime::floatToHalf(value->data[i])
                                      : runtime::floatToBFloat16(value->data[i]);
        os.write(reinterpret_cast<const char *>(narrow.data()),
                 narrow.size() * sizeof(uint16_t));
      }
      position = target + weight.getSize();
    }
  }
  return llvm::Error::success();
}

llvm::Error Writer::write(llvm::StringRef path) {
  auto config = module->getAttrOfType<mlir::DictionaryAttr>(
      mlir::megatron::MegatronDialect::kConfigAttrName);
  auto intAttr = [&](llvm::StringRef name) {
    auto a = module->getAttrOfType<mlir::IntegerAttr>(name);
    return a ? a.getInt() : 0;
  };
  if (!config || !intAttr("plan.max_batch"))
    return createStringError("the module is not a lowered plan (run the lower phase)");
  std::vector<flatbuffers::Offset<fb::Rank>> ranks;
  for (auto op : module.getOps<plan::RankOp>()) {
    auto r = rank(op);
    if (!r)
      return r.takeError();
    ranks.push_back(*r);
  }
  auto str = [&](llvm::StringRef key) {
    return fbb.CreateString(config.getAs<mlir::StringAttr>(key).getValue().str());
  };
  auto model = fb::CreateModel(fbb, str("model_type"), str("task"),
                               fbb.CreateString(configJson(config)),
                               intAttr("plan.max_batch"),
                               intAttr("plan.max_sequence"),
                               intAttr("plan.max_choices"), tokenizer(),
                               labels(config));
  auto rankVector = fbb.CreateVector(ranks);
  std::vector<flatbuffers::Offset<fb::KernelModule>> modules;
  for (const PtxModule &m : ptx)
    modules.push_back(fb::CreateKernelModule(fbb, fbb.CreateString(m.arch),
                                             fbb.CreateString(m.ptx),
                                             fbb.CreateVectorOfStrings(m.kernels),
                                             fbb.CreateVector(m.parameters)));
  auto kernelVector = modules.empty() ? 0 : fbb.CreateVector(modules);
  fb::FinishArtifactBuffer(fbb, fb::CreateArtifact(fbb, model, rankVector, kernelVector));

  runtime::ArtifactHeader header{};
  std::memcpy(header.magic, runtime::kArtifactMagic, sizeof(header.magic));
  header.formatVersion = runtime::kArtifactFormatVersion;
  header.headerSize = sizeof(header);
  header.flatbufferOffset = sizeof(header);
  header.flatbufferSize = fbb.GetSize();
  auto align = [](uint64_t v) {
    return (v + runtime::kWeightAlignment - 1) / runtime::kWeightAlignment *
           runtime::kWeightAlignment;
  };
  header.weightsOffset = align(header.flatbufferOffset + header.flatbufferSize);
  uint64_t segmentEnd = 0;
  for (auto [i, r] : llvm::enumerate(module.getOps<plan::RankOp>()))
    for (auto w : r.getBody().getOps<plan::WeightOp>())
      segmentEnd = std::max<uint64_t>(segmentEnd, regionOffsets[i] + w.getOffset() + w.getSize());
  header.weightsSize = segmentEnd;

  // Written to a temporary name first, so a failed compile leaves no
  // half-written artifact behind.
  std::string temporary = (path + ".partial").str();
  std::error_code ec;
  // Also gone when the compile is interrupted or runs out of memory.
  llvm::sys::RemoveFileOnSignal(temporary);
  llvm::scope_exit release([&] { llvm::sys::DontRemoveFileOnSignal(temporary); });
  {
    llvm::raw_fd_ostream os(temporary, ec);
    if (ec)
      return createStringError(formatv("cannot write '{0}': {1}", temporary, ec.message()));
    os.write(reinterpret_cast<const char *>(&header), sizeof(header));
    os.write(reinterpret_cast<const char *>(fbb.GetBufferPointer()), fbb.GetSize());
    os.write_zeros(header.weightsOffset - sizeof(header) - fbb.GetSize());
    llvm::Error err = streamWeights(os, header.weightsOffset);
    os.close();
    if (!err && os.has_error())
      err = createStringError(formatv("cannot write '{0}': {1}", temporary,
                                      os.error().message()));
    os.clear_error();
    if (err) {
      llvm::sys::fs::remove(temporary);
      return err;
    }
  }
  if ((ec = llvm::sys::fs::rename(temporary, path)))
    return createStringError(formatv("cannot write '{0}': {1}", path, ec.message()));
  return llvm::Error::success();
}

flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>>
Writer::labels(mlir::DictionaryAttr config) {
  auto names = config.getAs<mlir::ArrayAttr>("labels");
  if (!names)
    return 0;
  std::vector<std::string> strings;
  for (mlir::Attribute name : names)
    if (auto s = mlir::dyn_cast<mlir::StringAttr>(name))
      strings.push_back(s.str());
  return fbb.CreateVectorOfStrings(strings);
}

flatbuffers::Offset<fb::Tokenizer> Writer::tokenizer() {
  if (!tokenizerSpec)
    return 0;
  const runtime::TokenizerSpec &t = *tokenizerSpec;
  return fb::CreateTokenizer(
      fbb,
      t.kind == runtime::TokenizerSpec::Kind::WordPiece
          ? fb::TokenizerKind::WordPiece
          : fb::TokenizerKind::ByteLevelBPE,
      fbb.CreateVectorOfStrings(t.vocab), fbb.CreateVectorOfStrings(t.merges),
      t.lowercase, t.stripAccents, t.maxCharsPerWord, fbb.CreateString(t.unkToken),
      fbb.CreateString(t.clsToken), fbb.CreateString(t.sepToken),
      fbb.CreateString(t.padToken), fbb.CreateString(t.maskToken),
      fbb.CreateString(t.eosToken));
}

} // namespace

llvm::Error megatron::writeArtifact(mlir::ModuleOp module, const Checkpoint &ckpt,
                                    const runtime::TokenizerSpec *tokenizer,
                                    llvm::ArrayRef<PtxModule> kernels,
                                    llvm::StringRef path) {
  return Writer(module, ckpt, tokenizer, kernels).write(path);
}
