// The zip reader: open, then read every entry it lists.
#include "frontends/reader/ZipArchive.h"
#include "test/fuzz/MemoryBytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto zip = megatron::reader::ZipArchive::open(std::make_shared<MemoryBytes>(data, size));
  if (!zip) {
    llvm::consumeError(zip.takeError());
    return 0;
  }
  for (const std::string &name : (*zip)->entryNames()) {
    auto entry = (*zip)->openEntry(name);
    if (!entry) {
      llvm::consumeError(entry.takeError());
      continue;
    }
    std::vector<uint8_t> buffer((*entry)->size() < (1u << 20) ? (*entry)->size() : 0);
    if (!buffer.empty())
      llvm::consumeError((*entry)->read(0, buffer.size(), buffer.data()));
  }
  return 0;
}
