// The artifact loader (header, FlatBuffer verifier, buffer bounds) on
// arbitrary files, and the embedded tokenizer of those that load.
#include "megatron/runtime/Artifact.h"

#include <cstdio>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const std::string path = "/tmp/megatron-fuzz-artifact-" + std::to_string(getpid());
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f)
    return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  std::unique_ptr<megatron::runtime::Artifact> artifact;
  if (megatron::runtime::Artifact::open(path, artifact).ok()) {
    std::unique_ptr<megatron::runtime::Tokenizer> tokenizer;
    (void)artifact->tokenizer(tokenizer);
    (void)artifact->kernelModules();
  }
  return 0;
}
