//===- TorchFile.cpp - files written by torch.save ------------------------===//

#include "frontends/reader/TorchFile.h"

#include "frontends/reader/Pickle.h"
#include "frontends/reader/ZipArchive.h"

#include "llvm/Support/FormatVariadic.h"

#include <map>

using namespace megatron::reader;
using llvm::createStringError;
using llvm::formatv;

namespace {
/// A persistent id as torch writes it:
/// ('storage', storage_type, key, location, numel[, view_metadata]).
struct StorageId {
  DType dtype;
  std::string key;
  uint64_t numel;
  const Value *viewMetadata; ///< legacy format only; None or a tuple
};
} // namespace

/// The element type a persistent id's storage type stands for: a typed
/// storage class (torch.HalfStorage), a dtype (torch.float16), or
/// torch.UntypedStorage, whose numel counts bytes.
static std::optional<DType> storageDType(const Value &type) {
  if (type.kind() != Value::Kind::Global || type.module() != "torch")
    return std::nullopt;
  if (type.name() == "UntypedStorage")
    return DType::U8;
  if (std::optional<DType> dtype = dtypeFromTorchStorage(type.name()))
    return dtype;
  return dtypeFromTorchName(type.name());
}

static llvm::Expected<StorageId> parseStorageId(const Value &pid,
                                                size_t arity) {
  llvm::ArrayRef<ValuePtr> fields = pid.elements();
  auto malformed = [&](llvm::StringRef why) {
    return createStringError("persistent id " + pid.describe() + ": " + why);
  };
  if (pid.kind() != Value::Kind::Tuple || fields.size() != arity ||
      fields[0]->asString() != llvm::StringRef("storage"))
    return malformed(arity == 5 ? "expected ('storage', type, key, location, "
                                  "numel)"
                                : "expected ('storage', type, key, location, "
                                  "numel, view_metadata)");
  std::optional<DType> dtype = storageDType(*fields[1]);
  if (!dtype)
    return malformed("unknown storage type " + fields[1]->describe());
  std::optional<llvm::StringRef> key = fields[2]->asString();
  if (!key)
    return malformed("the key is " + fields[2]->describe());
  std::optional<int64_t> numel = fields[4]->asInt();
  if (!numel || *numel < 0)
    return malformed("the element count is " + fields[4]->describe());
  return StorageId{*dtype, key->str(), static_cast<uint64_t>(*numel),
                   arity > 5 ? fields[5].get() : nullptr};
}

/// The storage already made for `id.key`, which must agree with `id`.
static llvm::Error checkSameStorage(const Storage &storage,
                                    const StorageId &id) {
  if (storage.dtype == id.dtype && storage.numel == id.numel)
    return llvm::Error::success();
  return createStringError(
      formatv("storage '{0}' is used both as {1} x {2} and as {3} x "
              "{4}",
              storage.key, dtypeName(storage.dtype), storage.numel,
              dtypeName(id.dtype), id.numel));
}

//===----------------------------------------------------------------------===//
// Zip format
//===----------------------------------------------------------------------===//

/// The top folder: the one "<prefix>/data.pkl" in the archive.
static llvm::Expected<std::string> findPrefix(const ZipArchive &archive) {
  std::vector<llvm::StringRef> prefixes;
  for (llvm::StringRef name : archive.entryNames())
    if (name.consume_back("/data.pkl") && !name.contains('/'))
      prefixes.push_back(name);
  if (prefixes.size() == 1)
    return prefixes.front().str();
  if (prefixes.empty())
    return createStringError(
        archive.describe() +
        ": no <folder>/data.pkl record; not a torch.save archive");
  return createStringError(
      formatv("{0}: several data.pkl records ('{1}/data.pkl', "
              "'{2}/data.pkl', ...)",
              archive.describe(), prefixes[0], prefixes[1]));
}

static llvm::Error checkByteOrder(const ZipArchive &archive,
                                  const std::string &prefix) {
  std::string name = prefix + "/byteorder";
  if (!archive.contains(name))
    return llvm::Error::success(); // older torch: always little-endian
  auto entry = archive.openEntry(name);
  if (!entry)
    return entry.takeError();
  auto order = readAll(**entry, 64);
  if (!order)
    return order.takeError();
  if (llvm::StringRef(*order).trim() != "little")
    return createStringError((*entry)->describe() + ": byte order '" +
                             llvm::StringRef(*order).trim() +
                             "' is not supported");
  return llvm::Error::success();
}

static llvm::Expected<ValuePtr>
loadZip(std::shared_ptr<const ByteSource> bytes) {
  auto archive = ZipArchive::open(std::move(bytes));
  if (!archive)
    return archive.takeError();
  auto prefix = findPrefix(**archive);
  if (!prefix)
    return prefix.takeError();
  if (llvm::Error err = checkByteOrder(**archive, *prefix))
    return std::move(err);
  auto pickle = (*archive)->openEntry(*prefix + "/data.pkl");
  if (!pickle)
    return pickle.takeError();

  // Each storage is the record data/<key>; tensors sharing one share it.
  std::map<std::string, std::shared_ptr<Storage>> storages;
  auto loadStorage =
      [&](const Value &pid) -> llvm::Expected<std::shared_ptr<Storage>> {
    auto id = parseStorageId(pid, 5);
    if (!id)
      return id.takeError();
    std::shared_ptr<Storage> &storage = storages[id->key];
    if (storage) {
      if (llvm::Error err = checkSameStorage(*storage, *id))
        return std::move(err);
      return storage;
    }
    std::string record = *prefix + "/data/" + id->key;
    auto data = (*archive)->openEntry(record);
    if (!data)
      return data.takeError();
    auto made = std::make_shared<Storage>(
        Storage{id->dtype, record, id->numel, std::move(*data)});
    if (llvm::Error err = made->checkBytes())
      return std::move(err);
    storage = made;
    return made;
  };
  auto result = unpickle(**pickle, 0, loadStorage);
  if (!result)
    return result.takeError();
  return result->value;
}

//===----------------------------------------------------------------------===//
// Legacy format
//===----------------------------------------------------------------------===//

/// The legacy magic number 0x1950a86a20f9469cfc6c, in decimal.
constexpr llvm::StringLiteral kLegacyMagic = "119547037146038801333356";
constexpr int64_t kLegacyProtocol = 1001;

namespace {
/// Legacy storages are bound to their bytes only after the object pickle
/// and the key list have been read, since the data follows both.
class LegacyStorages {
public:
  explicit LegacyStorages(std::string file) : file_(std::move(file)) {}

  llvm::Expected<std::shared_ptr<Storage>> load(const Value &pid) {
    auto id = parseStorageId(pid, 6);
    if (!id)
      return id.takeError();
    std::shared_ptr<Storage> &root = roots_[id->key];
    if (!root)
      root = std::make_shared<Storage>(
          Storage{id->dtype, id->key, id->numel, nullptr});
    else if (llvm::Error err = checkSameStorage(*root, *id))
      return std::move(err);
    if (id->viewMetadata->isNone())
      return root;
    return loadView(*id, root);
  }

  /// Binds the storages to the records that follow the key list at `offset`.
  llvm::Error bind(const std::shared_ptr<const ByteSource> &file,
                   const Value &keys, uint64_t offset) {
    if (keys.kind() != Value::Kind::List)
      return createStringError(file_ + ": the storage key list is " +
                               keys.describe());
    for (const ValuePtr &keyValue : keys.elements()) {
      std::optional<llvm::StringRef> key = keyValue->asString();
      auto root = key ? roots_.find(key->str()) : roots_.end();
      if (root == roots_.end())
        return createStringError(file_ + ": the key list names " +
                                 keyValue->describe() +
                                 ", which no tensor uses");
      if (llvm::Error err = bindRecord(file, *root->second, offset))
        return err;
    }
    for (const auto &[key, root] : roots_)
      if (!root->bytes)
        return createStringError(file_ + ": storage '" + key +
                                 "' has no data record");
    for (const View &view : views_) {
      auto bytes = sliceSource(
          view.root->bytes, view.offset * dtypeSize(view.root->dtype),
          view.storage->numel * dtypeSize(view.root->dtype),
          "view '" + view.storage->key + "' of storage '" + view.root->key +
              "' in " + file_);
      if (!bytes)
        return bytes.takeError();
      view.storage->bytes = std::move(*bytes);
    }
    return llvm::Error::success();
  }

private:
  struct View {
    std::shared_ptr<Storage> storage, root;
    uint64_t offset; ///< in elements of the root
  };

  /// view_metadata = (view_key, offset, size): a storage that is a slice of
  /// the root storage (torch < 1.0 storage views).
  llvm::Expected<std::shared_ptr<Storage>>
  loadView(const StorageId &id, const std::shared_ptr<Storage> &root) {
    llvm::ArrayRef<ValuePtr> fields = id.viewMetadata->elements();
    std::optional<llvm::StringRef> key;
    std::optional<int64_t> offset, size;
    if (fields.size() == 3) {
      key = fields[0]->asString();
      offset = fields[1]->asInt();
      size = fields[2]->asInt();
    }
    if (!key || !offset || !size || *offset < 0 || *size < 0 ||
        static_cast<uint64_t>(*offset) > root->numel ||
        static_cast<uint64_t>(*size) > root->numel - *offset)
      return createStringError(
          formatv("storage '{0}': view metadata {1} does not "
                  "describe a slice of its {2} elements",
                  id.key, id.viewMetadata->describe(), root->numel));
    auto view = std::make_shared<Storage>(
        Storage{id.dtype, key->str(), static_cast<uint64_t>(*size), nullptr});
    views_.push_back(View{view, root, static_cast<uint64_t>(*offset)});
    return view;
  }

  llvm::Error bindRecord(const std::shared_ptr<const ByteSource> &file,
                         Storage &storage, uint64_t &offset) {
    if (storage.bytes)
      return createStringError(file_ + ": storage '" + storage.key +
                               "' is listed twice");
    uint8_t header[8];
    if (llvm::Error err = file->read(offset, 8, header))
      return createStringError("storage '" + storage.key +
                               "': " + llvm::toString(std::move(err)));
    uint64_t count = 0;
    for (int i = 7; i >= 0; --i)
      count = (count << 8) | header[i];
    if (count != storage.numel)
      return createStringError(
          formatv("{0}: storage '{1}' records {2} elements but the "
                  "pickle says {3}",
                  file_, storage.key, count, storage.numel));
    uint64_t length;
    if (__builtin_mul_overflow(count, dtypeSize(storage.dtype), &length))
      return createStringError(file_ + ": storage '" + storage.key +
                               "' is too large");
    auto bytes = sliceSource(file, offset + 8, length,
                             "storage '" + storage.key + "' in " + file_);
    if (!bytes)
      return bytes.takeError();
    storage.bytes = std::move(*bytes);
    offset += 8 + length;
    return llvm::Error::success();
  }

  std::string file_;
  std::map<std::string, std::shared_ptr<Storage>> roots_;
  std::vector<View> views_;
};
} // namespace

static llvm::Expected<ValuePtr>
loadLegacy(std::shared_ptr<const ByteSource> file) {
  std::string name = file->describe();
  auto magic = unpickle(*file, 0);
  if (!magic)
    return magic.takeError();
  if (magic->value->asBigInt() != kLegacyMagic)
    return createStringError(name + ": bad magic number " +
                             magic->value->describe() + "; not a torch file");
  auto protocol = unpickle(*file, magic->end);
  if (!protocol)
    return protocol.takeError();
  if (protocol->value->asInt() != kLegacyProtocol)
    return createStringError(name + ": unsupported legacy protocol " +
                             protocol->value->describe());
  auto sysInfo = unpickle(*file, protocol->end);
  if (!sysInfo)
    return sysInfo.takeError();
  const Value *littleEndian = sysInfo->value->dictGet("little_endian");
  if (littleEndian && littleEndian->asBool() != true)
    return createStringError(name + ": big-endian files are not supported");

  LegacyStorages storages(name);
  auto object = unpickle(*file, sysInfo->end,
                         [&](const Value &pid) { return storages.load(pid); });
  if (!object)
    return object.takeError();
  auto keys = unpickle(*file, object->end);
  if (!keys)
    return keys.takeError();
  if (llvm::Error err = storages.bind(file, *keys->value, keys->end))
    return std::move(err);
  return object->value;
}

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

llvm::Expected<ValuePtr>
megatron::reader::loadTorchFile(std::shared_ptr<const ByteSource> bytes) {
  uint8_t head[4] = {0, 0, 0, 0};
  if (llvm::Error err =
          bytes->read(0, std::min<uint64_t>(4, bytes->size()), head))
    return std::move(err);
  if (head[0] == 'P' && head[1] == 'K')
    return loadZip(std::move(bytes));
  if (head[0] == 0x80) // a pickle PROTO opcode: the legacy format
    return loadLegacy(std::move(bytes));
  return createStringError(
      formatv("{0}: neither a torch zip archive nor a legacy torch "
              "file (starts with {1:x-2} {2:x-2} {3:x-2} {4:x-2})",
              bytes->describe(), head[0], head[1], head[2], head[3]));
}

llvm::Expected<ValuePtr> megatron::reader::loadTorchFile(llvm::StringRef path) {
  auto file = MappedFile::open(path);
  if (!file)
    return file.takeError();
  return loadTorchFile(std::shared_ptr<const ByteSource>(std::move(*file)));
}
