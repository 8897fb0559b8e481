// safetensors headers and data offsets on arbitrary bytes.
#include "frontends/reader/Safetensors.h"
#include "test/fuzz/MemoryBytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto result = megatron::reader::loadSafetensors(std::make_shared<MemoryBytes>(data, size));
  if (!result)
    llvm::consumeError(result.takeError());
  return 0;
}
