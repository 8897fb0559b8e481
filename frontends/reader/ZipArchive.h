//===- ZipArchive.h - read-only zip archives over a ByteSource -*- C++ -*-===//
//
// torch.save writes a zip of STORED records; NGC distributes Megatron
// checkpoints as zips that may deflate the inner .pt. Entries come back as
// ByteSources: a stored entry is read in place on demand, a compressed one is
// inflated once into an unlinked temporary file and mapped (never into RAM,
// since these run to gigabytes). Parsing is left to libzip.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_ZIPARCHIVE_H
#define MEGATRON_FRONTENDS_READER_ZIPARCHIVE_H

#include "frontends/reader/ByteSource.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <vector>

namespace megatron::reader {

class ZipArchive {
public:
  static llvm::Expected<std::unique_ptr<ZipArchive>> open(llvm::StringRef path);
  /// Opens the archive held in `bytes` (e.g. an entry of another zip).
  static llvm::Expected<std::unique_ptr<ZipArchive>>
  open(std::shared_ptr<const ByteSource> bytes);

  ZipArchive(const ZipArchive &) = delete;
  ZipArchive &operator=(const ZipArchive &) = delete;
  ~ZipArchive();

  /// Entry names in central-directory order.
  const std::vector<std::string> &entryNames() const;
  bool contains(llvm::StringRef name) const;
  /// The entry's uncompressed bytes. The result stays valid after the
  /// archive object is destroyed.
  llvm::Expected<std::shared_ptr<ByteSource>>
  openEntry(llvm::StringRef name) const;
  /// The archive's own description (its path, or where it is nested).
  std::string describe() const;

  struct State;

private:
  explicit ZipArchive(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_ZIPARCHIVE_H
