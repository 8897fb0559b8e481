//===- Safetensors.cpp - .safetensors files -------------------------------===//

#include "frontends/reader/Safetensors.h"

#include "llvm/Support/FormatVariadic.h"

#include <nlohmann/json.hpp>

#include <algorithm>

using namespace megatron::reader;
using llvm::createStringError;
using llvm::formatv;
using Json = nlohmann::ordered_json; // keeps the header's tensor order

/// The reference implementation refuses headers above 100 MB too.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

namespace {
/// One header entry, checked against the data section.
struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end; ///< offsets into the data section
};
} // namespace

/// A non-negative JSON integer (nlohmann parses those as unsigned).
static std::optional<uint64_t> unsignedOf(const Json &json) {
  if (!json.is_number_unsigned())
    return std::nullopt;
  return json.get<uint64_t>();
}

static llvm::Expected<Entry> parseEntry(const std::string &file,
                                        const std::string &name,
                                        const Json &json, uint64_t dataSize) {
  auto fail = [&](const llvm::Twine &why) {
    return createStringError(file + ": tensor '" + name + "': " + why);
  };
  if (!json.is_object())
    return fail("header entry is not an object");
  Entry entry{name, DType::U8, {}, 0, 0};

  auto dtype = json.find("dtype");
  if (dtype == json.end() || !dtype->is_string())
    return fail("missing dtype");
  std::optional<DType> parsed =
      dtypeFromSafetensors(dtype->get_ref<const std::string &>());
  if (!parsed)
    return fail("unsupported dtype '" + dtype->get_ref<const std::string &>() +
                "'");
  entry.dtype = *parsed;

  auto shape = json.find("shape");
  if (shape == json.end() || !shape->is_array() ||
      shape->size() > kMaxTensorRank)
    return fail("missing or malformed shape");
  uint64_t numel = 1;
  for (const Json &dim : *shape) {
    std::optional<uint64_t> size = unsignedOf(dim);
    if (!size || *size > static_cast<uint64_t>(INT64_MAX))
      return fail("shape holds " + dim.dump() + ", not a non-negative integer");
    if (__builtin_mul_overflow(numel, *size, &numel))
      return fail("shape has too many elements");
    entry.shape.push_back(static_cast<int64_t>(*size));
  }

  auto offsets = json.find("data_offsets");
  std::optional<uint64_t> begin, end;
  if (offsets != json.end() && offsets->is_array() && offsets->size() == 2) {
    begin = unsignedOf((*offsets)[0]);
    end = unsignedOf((*offsets)[1]);
  }
  if (!begin || !end)
    return fail("data_offsets must be two non-negative integers");
  if (*begin > *end || *end > dataSize)
    return fail(formatv("data_offsets [{0}, {1}] are not within the {2}-byte "
                        "data section",
                        *begin, *end, dataSize)
                    .str());
  uint64_t expected;
  if (__builtin_mul_overflow(numel, dtypeSize(entry.dtype), &expected) ||
      expected != *end - *begin)
    return fail(formatv("data_offsets span {0} bytes but {1} x {2} needs {3}",
                        *end - *begin, numel, dtypeName(entry.dtype),
                        numel * dtypeSize(entry.dtype))
                    .str());
  entry.begin = *begin;
  entry.end = *end;
  return entry;
}

/// Two tensors may not share bytes (empty ones occupy none).
static llvm::Error checkDisjoint(const std::string &file,
                                 std::vector<const Entry *> entries) {
  llvm::erase_if(entries, [](const Entry *e) { return e->begin == e->end; });
  std::sort(entries.begin(), entries.end(),
            [](const Entry *a, const Entry *b) { return a->begin < b->begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i]->begin < entries[i - 1]->end)
      return createStringError(formatv("{0}: tensors '{1}' and '{2}' overlap",
                                       file, entries[i - 1]->name,
                                       entries[i]->name));
  return llvm::Error::success();
}

llvm::Expected<std::vector<NamedTensor>>
megatron::reader::loadSafetensors(std::shared_ptr<const ByteSource> bytes) {
  std::string file = bytes->describe();
  uint8_t prefix[8];
  if (bytes->size() < 8)
    return createStringError(file + ": too short for a safetensors header");
  if (llvm::Error err = bytes->read(0, 8, prefix))
    return std::move(err);
  uint64_t headerSize = 0;
  for (int i = 7; i >= 0; --i)
    headerSize = (headerSize << 8) | prefix[i];
  if (headerSize > kMaxHeaderBytes || headerSize > bytes->size() - 8)
    return createStringError(
        formatv("{0}: header length {1} exceeds the file ({2} bytes) "
                "or the {3}-byte limit",
                file, headerSize, bytes->size(), kMaxHeaderBytes));
  std::string text(headerSize, '\0');
  if (llvm::Error err = bytes->read(8, headerSize, text.data()))
    return std::move(err);
  Json header = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    return createStringError(file + ": the header is not a JSON object");

  const uint64_t dataStart = 8 + headerSize;
  const uint64_t dataSize = bytes->size() - dataStart;
  std::vector<Entry> entries;
  for (const auto &[name, json] : header.items()) {
    if (name == "__metadata__")
      continue;
    auto entry = parseEntry(file, name, json, dataSize);
    if (!entry)
      return entry.takeError();
    entries.push_back(std::move(*entry));
  }
  std::vector<const Entry *> pointers;
  for (const Entry &entry : entries)
    pointers.push_back(&entry);
  if (llvm::Error err = checkDisjoint(file, std::move(pointers)))
    return std::move(err);

  std::vector<NamedTensor> tensors;
  for (Entry &entry : entries) {
    auto data =
        sliceSource(bytes, dataStart + entry.begin, entry.end - entry.begin,
                    "tensor '" + entry.name + "' in " + file);
    if (!data)
      return data.takeError();
    uint64_t numel = (entry.end - entry.begin) / dtypeSize(entry.dtype);
    auto storage = std::make_shared<Storage>(
        Storage{entry.dtype, entry.name, numel, std::move(*data)});
    auto tensor = TensorRef::contiguous(std::move(storage), entry.shape);
    if (!tensor)
      return tensor.takeError();
    tensors.push_back(NamedTensor{std::move(entry.name), std::move(*tensor)});
  }
  return tensors;
}

llvm::Expected<std::vector<NamedTensor>>
megatron::reader::loadSafetensors(llvm::StringRef path) {
  auto file = MappedFile::open(path);
  if (!file)
    return file.takeError();
  return loadSafetensors(std::shared_ptr<const ByteSource>(std::move(*file)));
}
