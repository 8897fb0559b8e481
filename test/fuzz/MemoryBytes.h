//===- MemoryBytes.h - fuzz input as a ByteSource --------------*- C++ -*-===//

#ifndef MEGATRON_TEST_FUZZ_MEMORYBYTES_H
#define MEGATRON_TEST_FUZZ_MEMORYBYTES_H

#include "frontends/reader/ByteSource.h"

#include <cstring>

class MemoryBytes final : public megatron::reader::ByteSource {
public:
  MemoryBytes(const uint8_t *data, size_t size) : bytes_(data, data + size) {}
  uint64_t size() const override { return bytes_.size(); }
  std::string describe() const override { return "fuzz input"; }

protected:
  llvm::Error readInRange(uint64_t offset, uint64_t length, void *dst) const override {
    std::memcpy(dst, bytes_.data() + offset, length);
    return llvm::Error::success();
  }

private:
  std::vector<uint8_t> bytes_;
};

#endif
