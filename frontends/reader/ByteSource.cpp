//===- ByteSource.cpp - random-access bytes of a checkpoint ---------------===//

#include "frontends/reader/ByteSource.h"

#include "llvm/Support/FormatVariadic.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace megatron::reader;
using llvm::formatv;

ByteSource::~ByteSource() = default;

llvm::Error ByteSource::read(uint64_t offset, uint64_t length,
                             void *dst) const {
  // Written so that it cannot overflow: offset + length may wrap.
  if (offset > size() || length > size() - offset)
    return llvm::createStringError(
        formatv("{0}: read of {1} bytes at offset {2} goes past its end "
                "(size {3})",
                describe(), length, offset, size())
            .str());
  if (length == 0)
    return llvm::Error::success();
  return readInRange(offset, length, dst);
}

//===----------------------------------------------------------------------===//
// MappedFile
//===----------------------------------------------------------------------===//

static llvm::Error errnoError(const std::string &what, int err) {
  return llvm::createStringError(std::error_code(err, std::generic_category()),
                                 "%s: %s", what.c_str(), std::strerror(err));
}

llvm::Expected<std::shared_ptr<MappedFile>>
MappedFile::open(llvm::StringRef path) {
  int fd = ::open(path.str().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errnoError("cannot open " + path.str(), errno);
  auto mapped = mapDescriptor(fd, path.str());
  ::close(fd);
  return mapped;
}

llvm::Expected<std::shared_ptr<MappedFile>>
MappedFile::mapDescriptor(int fd, std::string description) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return errnoError("cannot stat " + description, errno);
  if (!S_ISREG(st.st_mode))
    return llvm::createStringError(description + ": not a regular file");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint8_t *data = nullptr;
  if (size != 0) {
    void *map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
      return errnoError("cannot map " + description, errno);
    data = static_cast<const uint8_t *>(map);
  }
  return std::shared_ptr<MappedFile>(
      new MappedFile(data, size, std::move(description)));
}

MappedFile::~MappedFile() {
  if (data_)
    ::munmap(const_cast<uint8_t *>(data_), size_);
}

llvm::Error MappedFile::readInRange(uint64_t offset, uint64_t length,
                                    void *dst) const {
  std::memcpy(dst, data_ + offset, length);
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Slices and memory
//===----------------------------------------------------------------------===//

namespace {
class Slice final : public ByteSource {
public:
  Slice(std::shared_ptr<const ByteSource> parent, uint64_t offset,
        uint64_t length, std::string description)
      : parent_(std::move(parent)), offset_(offset), length_(length),
        description_(std::move(description)) {}

  uint64_t size() const override { return length_; }
  std::string describe() const override { return description_; }

private:
  llvm::Error readInRange(uint64_t offset, uint64_t length,
                          void *dst) const override {
    return parent_->read(offset_ + offset, length, dst);
  }

  std::shared_ptr<const ByteSource> parent_;
  uint64_t offset_, length_;
  std::string description_;
};

class MemoryBytes final : public ByteSource {
public:
  MemoryBytes(std::vector<uint8_t> bytes, std::string description)
      : bytes_(std::move(bytes)), description_(std::move(description)) {}

  uint64_t size() const override { return bytes_.size(); }
  std::string describe() const override { return description_; }

private:
  llvm::Error readInRange(uint64_t offset, uint64_t length,
                          void *dst) const override {
    std::memcpy(dst, bytes_.data() + offset, length);
    return llvm::Error::success();
  }

  std::vector<uint8_t> bytes_;
  std::string description_;
};
} // namespace

llvm::Expected<std::shared_ptr<ByteSource>>
megatron::reader::sliceSource(std::shared_ptr<const ByteSource> parent,
                              uint64_t offset, uint64_t length,
                              std::string description) {
  uint64_t parentSize = parent->size();
  if (offset > parentSize || length > parentSize - offset)
    return llvm::createStringError(
        formatv("{0}: bytes [{1}, {1} + {2}) lie outside {3} (size {4})",
                description, offset, length, parent->describe(), parentSize)
            .str());
  return std::make_shared<Slice>(std::move(parent), offset, length,
                                 std::move(description));
}

std::shared_ptr<ByteSource>
megatron::reader::memorySource(std::vector<uint8_t> bytes,
                               std::string description) {
  return std::make_shared<MemoryBytes>(std::move(bytes),
                                       std::move(description));
}

std::shared_ptr<ByteSource>
megatron::reader::memorySource(llvm::StringRef bytes, std::string description) {
  return memorySource(
      std::vector<uint8_t>(bytes.bytes_begin(), bytes.bytes_end()),
      std::move(description));
}

llvm::Expected<std::string> megatron::reader::readAll(const ByteSource &source,
                                                      uint64_t maxBytes) {
  if (source.size() > maxBytes)
    return llvm::createStringError(
        formatv("{0}: {1} bytes is more than the {2} expected",
                source.describe(), source.size(), maxBytes)
            .str());
  std::string bytes(source.size(), '\0');
  if (llvm::Error err = source.read(0, bytes.size(), bytes.data()))
    return std::move(err);
  return bytes;
}
