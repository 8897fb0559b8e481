// The runtime tools' --input-ids / --attention-mask / --token-type-ids
// syntax: a bad value is a CommandLineError, and a parsed one is a dense
// tensor whose shape covers exactly its values.
#include "tools/support/CommandLine.h"

#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  try {
    megatron::runtime::IdTensor ids = megatron::tools::parseIdBatch("--input-ids", text);
    size_t elements = 1;
    for (int64_t d : ids.shape)
      if (d < 1)
        std::abort();
      else
        elements *= static_cast<size_t>(d);
    if (ids.shape.size() < 2 || ids.shape.size() > 3 || elements != ids.data.size())
      std::abort();
  } catch (const megatron::tools::CommandLineError &) {
  }
  return 0;
}
