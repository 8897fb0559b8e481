// torch.save files (zip or legacy) on arbitrary bytes.
#include "frontends/reader/TorchFile.h"
#include "test/fuzz/MemoryBytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto result = megatron::reader::loadTorchFile(std::make_shared<MemoryBytes>(data, size));
  if (!result)
    llvm::consumeError(result.takeError());
  return 0;
}
