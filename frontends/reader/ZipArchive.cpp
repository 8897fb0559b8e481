//===- ZipArchive.cpp - read-only zip archives over a ByteSource ----------===//

#include "frontends/reader/ZipArchive.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <zip.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdlib.h>
#include <unistd.h>

using namespace megatron::reader;
using llvm::formatv;

struct ZipArchive::State {
  std::shared_ptr<const ByteSource> bytes;
  // What libzip's source callback needs: its read position and errors.
  uint64_t position = 0;
  zip_error_t sourceError;
  std::string readFailure; ///< why `bytes` failed, which libzip cannot carry

  /// A zip_t is not thread-safe; every libzip call on it holds this.
  std::mutex mutex;
  zip_t *zip = nullptr;
  std::vector<std::string> names;
  llvm::StringMap<uint64_t> indices;

  State() { zip_error_init(&sourceError); }
  ~State() {
    if (zip)
      zip_discard(zip);
    zip_error_fini(&sourceError);
  }

  std::string entryDescription(llvm::StringRef name) const {
    return formatv("'{0}' in {1}", name, bytes->describe()).str();
  }

  /// An error for `what`, with libzip's reason and the underlying read
  /// failure when there was one.
  llvm::Error error(const std::string &what, zip_error_t *reason) {
    std::string message = what + ": " + zip_error_strerror(reason);
    if (!readFailure.empty())
      message += " (" + readFailure + ")";
    readFailure.clear();
    return llvm::createStringError(message);
  }
};

/// libzip's view of a ByteSource: a seekable, readable stream.
static zip_int64_t sourceCallback(void *userdata, void *data, zip_uint64_t len,
                                  zip_source_cmd_t cmd) {
  auto &state = *static_cast<ZipArchive::State *>(userdata);
  uint64_t size = state.bytes->size();
  switch (cmd) {
  case ZIP_SOURCE_OPEN:
    state.position = 0;
    return 0;
  case ZIP_SOURCE_READ: {
    uint64_t n = std::min<uint64_t>(len, size - state.position);
    if (llvm::Error err = state.bytes->read(state.position, n, data)) {
      state.readFailure = llvm::toString(std::move(err));
      zip_error_set(&state.sourceError, ZIP_ER_READ, EIO);
      return -1;
    }
    state.position += n;
    return static_cast<zip_int64_t>(n);
  }
  case ZIP_SOURCE_CLOSE:
  case ZIP_SOURCE_FREE: // the State owns everything
    return 0;
  case ZIP_SOURCE_STAT: {
    if (len < sizeof(zip_stat_t)) {
      zip_error_set(&state.sourceError, ZIP_ER_INVAL, 0);
      return -1;
    }
    auto *st = static_cast<zip_stat_t *>(data);
    zip_stat_init(st);
    st->size = size;
    st->valid |= ZIP_STAT_SIZE;
    return sizeof(zip_stat_t);
  }
  case ZIP_SOURCE_ERROR:
    return zip_error_to_data(&state.sourceError, data, len);
  case ZIP_SOURCE_SEEK: {
    zip_int64_t target = zip_source_seek_compute_offset(
        state.position, size, data, len, &state.sourceError);
    if (target < 0)
      return -1;
    state.position = static_cast<uint64_t>(target);
    return 0;
  }
  case ZIP_SOURCE_TELL:
    return static_cast<zip_int64_t>(state.position);
  case ZIP_SOURCE_SUPPORTS:
    return zip_source_make_command_bitmap(
        ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT,
        ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE, ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL,
        ZIP_SOURCE_SUPPORTS, -1);
  default:
    zip_error_set(&state.sourceError, ZIP_ER_OPNOTSUPP, 0);
    return -1;
  }
}

namespace {
/// A STORED entry, read in place: each read seeks within the entry, so no
/// more than the requested bytes are ever copied.
class StoredEntry final : public ByteSource {
public:
  StoredEntry(std::shared_ptr<ZipArchive::State> archive, uint64_t index,
              uint64_t size, std::string description)
      : archive_(std::move(archive)), index_(index), size_(size),
        description_(std::move(description)) {}

  uint64_t size() const override { return size_; }
  std::string describe() const override { return description_; }

private:
  llvm::Error readInRange(uint64_t offset, uint64_t length,
                          void *dst) const override {
    ZipArchive::State &state = *archive_;
    std::lock_guard<std::mutex> lock(state.mutex);
    zip_file_t *file = zip_fopen_index(state.zip, index_, 0);
    if (!file)
      return state.error(description_, zip_get_error(state.zip));
    llvm::Error result = readOpen(file, offset, length, dst);
    zip_fclose(file);
    return result;
  }

  llvm::Error readOpen(zip_file_t *file, uint64_t offset, uint64_t length,
                       void *dst) const {
    ZipArchive::State &state = *archive_;
    if (offset != 0 &&
        zip_fseek(file, static_cast<zip_int64_t>(offset), SEEK_SET) != 0)
      return state.error(description_, zip_file_get_error(file));
    auto *out = static_cast<uint8_t *>(dst);
    while (length > 0) {
      zip_int64_t n = zip_fread(file, out, length);
      if (n < 0)
        return state.error(description_, zip_file_get_error(file));
      if (n == 0)
        return llvm::createStringError(description_ +
                                       ": entry ends early (truncated zip?)");
      out += n;
      length -= static_cast<uint64_t>(n);
    }
    // libzip checks the CRC once a read reaches the end of the entry, so a
    // read of the whole entry (a contiguous tensor's record, data.pkl) asks
    // for one byte more to get corrupt data reported.
    if (offset == 0 && out == static_cast<uint8_t *>(dst) + size_) {
      uint8_t extra;
      zip_int64_t n = zip_fread(file, &extra, 1);
      if (n < 0)
        return state.error(description_, zip_file_get_error(file));
      if (n > 0)
        return llvm::createStringError(
            description_ + ": entry is longer than the zip directory says");
    }
    return llvm::Error::success();
  }

  std::shared_ptr<ZipArchive::State> archive_;
  uint64_t index_, size_;
  std::string description_;
};

/// Closes a file descriptor on every path out of the extraction.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};
} // namespace

/// Inflates entry `index` into an unlinked temporary file and maps it. The
/// disk space goes away with the mapping.
static llvm::Expected<std::shared_ptr<ByteSource>>
extractToTemporaryFile(ZipArchive::State &state, uint64_t index,
                       uint64_t expectedSize, const std::string &description) {
  llvm::SmallString<128> directory;
  llvm::sys::path::system_temp_directory(/*ErasedOnReboot=*/true, directory);
  std::string pattern = (directory + "/megatron-zip-XXXXXX").str();
  int fd = ::mkstemp(pattern.data());
  if (fd < 0)
    return llvm::createStringError(
        formatv("{0}: cannot create a temporary file in {1} to inflate into: "
                "{2}",
                description, directory, std::strerror(errno))
            .str());
  FdCloser closer{fd};
  ::unlink(pattern.c_str());

  zip_file_t *file = zip_fopen_index(state.zip, index, 0);
  if (!file)
    return state.error(description, zip_get_error(state.zip));
  std::vector<uint8_t> chunk(1 << 20);
  uint64_t total = 0;
  llvm::Error failure = llvm::Error::success();
  while (true) {
    zip_int64_t n = zip_fread(file, chunk.data(), chunk.size());
    if (n < 0) {
      failure = state.error(description, zip_file_get_error(file));
      break;
    }
    if (n == 0)
      break;
    for (zip_int64_t written = 0; written < n;) {
      ssize_t w = ::write(fd, chunk.data() + written, n - written);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        failure = llvm::createStringError(
            description + ": cannot write the inflated copy to " + pattern +
            ": " + std::strerror(errno));
        break;
      }
      written += w;
    }
    if (failure)
      break;
    total += static_cast<uint64_t>(n);
  }
  zip_fclose(file);
  if (failure)
    return std::move(failure);
  if (total != expectedSize)
    return llvm::createStringError(
        formatv("{0}: inflated to {1} bytes but the directory says {2}",
                description, total, expectedSize)
            .str());
  auto mapped = MappedFile::mapDescriptor(fd, description);
  if (!mapped)
    return mapped.takeError();
  return std::shared_ptr<ByteSource>(std::move(*mapped));
}

//===----------------------------------------------------------------------===//
// ZipArchive
//===----------------------------------------------------------------------===//

ZipArchive::ZipArchive(std::shared_ptr<State> state)
    : state_(std::move(state)) {}
ZipArchive::~ZipArchive() = default;

llvm::Expected<std::unique_ptr<ZipArchive>>
ZipArchive::open(llvm::StringRef path) {
  auto file = MappedFile::open(path);
  if (!file)
    return file.takeError();
  return open(std::shared_ptr<const ByteSource>(std::move(*file)));
}

llvm::Expected<std::unique_ptr<ZipArchive>>
ZipArchive::open(std::shared_ptr<const ByteSource> bytes) {
  auto state = std::make_shared<State>();
  state->bytes = std::move(bytes);
  std::string description = state->bytes->describe();

  zip_error_t error;
  zip_error_init(&error);
  zip_source_t *source =
      zip_source_function_create(sourceCallback, state.get(), &error);
  if (!source) {
    llvm::Error err = state->error(description, &error);
    zip_error_fini(&error);
    return std::move(err);
  }
  // CHECKCONS makes libzip compare local headers with the central directory,
  // which catches truncated and spliced archives up front.
  state->zip = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (!state->zip) {
    zip_source_free(source);
    llvm::Error err =
        state->error(description + ": not a readable zip archive", &error);
    zip_error_fini(&error);
    return std::move(err);
  }
  zip_error_fini(&error);

  zip_int64_t count = zip_get_num_entries(state->zip, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char *name = zip_get_name(state->zip, i, 0);
    if (!name)
      return state->error(formatv("{0}: entry {1}", description, i).str(),
                          zip_get_error(state->zip));
    state->names.emplace_back(name);
    state->indices.try_emplace(name, i);
  }
  return std::unique_ptr<ZipArchive>(new ZipArchive(std::move(state)));
}

const std::vector<std::string> &ZipArchive::entryNames() const {
  return state_->names;
}

bool ZipArchive::contains(llvm::StringRef name) const {
  return state_->indices.count(name) != 0;
}

std::string ZipArchive::describe() const { return state_->bytes->describe(); }

llvm::Expected<std::shared_ptr<ByteSource>>
ZipArchive::openEntry(llvm::StringRef name) const {
  State &state = *state_;
  std::string description = state.entryDescription(name);
  auto found = state.indices.find(name);
  if (found == state.indices.end())
    return llvm::createStringError(description + ": no such entry");
  uint64_t index = found->second;

  std::lock_guard<std::mutex> lock(state.mutex);
  zip_stat_t st;
  if (zip_stat_index(state.zip, index, 0, &st) != 0)
    return state.error(description, zip_get_error(state.zip));
  const zip_uint64_t needed =
      ZIP_STAT_SIZE | ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
  if ((st.valid & needed) != needed)
    return llvm::createStringError(description +
                                   ": the zip directory lacks its size or "
                                   "compression method");
  if (st.encryption_method != ZIP_EM_NONE)
    return llvm::createStringError(description + ": entry is encrypted");
  if (st.comp_method == ZIP_CM_STORE)
    return std::make_shared<StoredEntry>(state_, index, st.size,
                                         std::move(description));
  return extractToTemporaryFile(state, index, st.size, description);
}
