// The restricted unpickler on arbitrary bytes: an error or a value, never
// a crash, a leak or undefined behaviour.
#include "frontends/reader/Pickle.h"
#include "test/fuzz/MemoryBytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  MemoryBytes bytes(data, size);
  auto result = megatron::reader::unpickle(bytes);
  if (!result)
    llvm::consumeError(result.takeError());
  return 0;
}
