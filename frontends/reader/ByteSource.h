//===- ByteSource.h - random-access bytes of a checkpoint ------*- C++ -*-===//
//
// Everything the readers parse or hand out as tensor data is a ByteSource: a
// memory-mapped file, a slice of one, a zip entry, or bytes in memory. Tensor
// data is only copied when a caller reads it, so opening a multi-GB checkpoint
// costs the size of its metadata.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_BYTESOURCE_H
#define MEGATRON_FRONTENDS_READER_BYTESOURCE_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace megatron::reader {

class ByteSource {
public:
  virtual ~ByteSource();

  virtual uint64_t size() const = 0;
  /// Names the bytes for error messages: a path, or "'entry' in archive.zip".
  virtual std::string describe() const = 0;

  /// Copies bytes [offset, offset + length) into `dst`. A range that is not
  /// inside the source is an error, never a crash. Safe to call from several
  /// threads at once.
  llvm::Error read(uint64_t offset, uint64_t length, void *dst) const;

protected:
  /// `read` after the range has been checked against `size()`.
  virtual llvm::Error readInRange(uint64_t offset, uint64_t length,
                                  void *dst) const = 0;
};

/// A read-only memory mapping of a whole file.
class MappedFile final : public ByteSource {
public:
  static llvm::Expected<std::shared_ptr<MappedFile>> open(llvm::StringRef path);
  /// Maps the file open on `fd` (which the caller may close afterwards);
  /// `description` names it in messages.
  static llvm::Expected<std::shared_ptr<MappedFile>>
  mapDescriptor(int fd, std::string description);

  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;
  ~MappedFile() override;

  uint64_t size() const override { return size_; }
  std::string describe() const override { return description_; }

private:
  MappedFile(const uint8_t *data, uint64_t size, std::string description)
      : data_(data), size_(size), description_(std::move(description)) {}
  llvm::Error readInRange(uint64_t offset, uint64_t length,
                          void *dst) const override;

  const uint8_t *data_; ///< null for an empty file, which cannot be mapped
  uint64_t size_;
  std::string description_;
};

/// Bytes [offset, offset + length) of `parent`; fails when they are not all
/// inside it.
llvm::Expected<std::shared_ptr<ByteSource>>
sliceSource(std::shared_ptr<const ByteSource> parent, uint64_t offset,
            uint64_t length, std::string description);

/// Bytes held in memory (small records, and tests).
std::shared_ptr<ByteSource> memorySource(std::vector<uint8_t> bytes,
                                         std::string description);
std::shared_ptr<ByteSource> memorySource(llvm::StringRef bytes,
                                         std::string description);

/// Reads all of `source` into memory; for small records such as a zip's
/// `version` entry. Fails when it is larger than `maxBytes`.
llvm::Expected<std::string> readAll(const ByteSource &source,
                                    uint64_t maxBytes);

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_BYTESOURCE_H
