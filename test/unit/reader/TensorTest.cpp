//===- TensorTest.cpp - strided views over storages -----------------------===//

#include "TestSupport.h"

#include "frontends/reader/Tensor.h"

#include <atomic>
#include <numeric>

using namespace megatron::reader;

namespace {

/// A float32 storage holding 0, 1, 2, ... n-1.
std::shared_ptr<Storage> iotaStorage(uint64_t n, uint64_t extraBytes = 0) {
  std::vector<float> values(n);
  std::iota(values.begin(), values.end(), 0.0f);
  std::vector<uint8_t> bytes(n * sizeof(float) + extraBytes);
  std::memcpy(bytes.data(), values.data(), n * sizeof(float));
  return std::make_shared<Storage>(
      Storage{DType::F32, "iota", n, memorySource(std::move(bytes), "iota")});
}

std::vector<float> readFloats(const TensorRef &tensor) {
  std::vector<float> values(tensor.numel());
  llvm::Error err = tensor.read(values.data());
  EXPECT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));
  return values;
}

TEST(Tensor, ContiguousRead) {
  ASSERT_OK_AND_ASSIGN(tensor, TensorRef::contiguous(iotaStorage(6), {2, 3}));
  EXPECT_TRUE(tensor.isContiguous());
  EXPECT_EQ(tensor.strides, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(tensor.numel(), 6u);
  EXPECT_EQ(tensor.nbytes(), 24u);
  EXPECT_EQ(readFloats(tensor), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(tensor.describe(), "f32[2, 3] in storage 'iota'");
}

TEST(Tensor, StridedViews) {
  auto storage = iotaStorage(24);
  // Transposed 4x6 -> 6x4.
  ASSERT_OK_AND_ASSIGN(transposed,
                       TensorRef::create(storage, 0, {6, 4}, {1, 6}));
  EXPECT_FALSE(transposed.isContiguous());
  std::vector<float> values = readFloats(transposed);
  EXPECT_EQ(values[1], 6);
  EXPECT_EQ(values[4], 1);
  EXPECT_EQ(values[23], 23);
  // Offset slice [1:3, 2:5] of a 4x6 matrix.
  ASSERT_OK_AND_ASSIGN(slice, TensorRef::create(storage, 8, {2, 3}, {6, 1}));
  EXPECT_EQ(readFloats(slice), (std::vector<float>{8, 9, 10, 14, 15, 16}));
  // Broadcast (stride 0) and size-1 dimensions with odd strides.
  ASSERT_OK_AND_ASSIGN(expanded,
                       TensorRef::create(storage, 5, {2, 1, 3}, {1, 99, 0}));
  EXPECT_EQ(readFloats(expanded), (std::vector<float>{5, 5, 5, 6, 6, 6}));
  ASSERT_OK_AND_ASSIGN(unit,
                       TensorRef::create(storage, 7, {1, 3, 1}, {50, 1, 9}));
  EXPECT_TRUE(unit.isContiguous());
  EXPECT_EQ(readFloats(unit), (std::vector<float>{7, 8, 9}));
  // Scalars and empty tensors.
  ASSERT_OK_AND_ASSIGN(scalar, TensorRef::create(storage, 23, {}, {}));
  EXPECT_EQ(readFloats(scalar), (std::vector<float>{23}));
  ASSERT_OK_AND_ASSIGN(empty, TensorRef::create(storage, 1000, {0, 4}, {4, 1}));
  EXPECT_EQ(empty.numel(), 0u);
  EXPECT_FALSE(static_cast<bool>(empty.read(nullptr)));
}

/// int32 element i holds i; the bytes are made up on demand, so storages can
/// be huge. Counts the reads it serves.
class IotaSource : public ByteSource {
public:
  explicit IotaSource(uint64_t count) : count_(count) {}
  uint64_t size() const override { return count_ * 4; }
  std::string describe() const override { return "iota source"; }
  mutable std::atomic<int> reads{0};

private:
  llvm::Error readInRange(uint64_t offset, uint64_t length,
                          void *dst) const override {
    ++reads;
    auto *out = static_cast<uint8_t *>(dst);
    for (uint64_t i = 0; i < length; ++i) {
      uint32_t element = static_cast<uint32_t>((offset + i) / 4);
      out[i] = static_cast<uint8_t>(element >> (8 * ((offset + i) % 4)));
    }
    return llvm::Error::success();
  }
  uint64_t count_;
};

TEST(Tensor, StridedReadsBufferTheSpanOnlyWhenItIsSmall) {
  constexpr int64_t kCount = 100;
  // Every 2^20th element of 2^27: the span (512 MiB) dwarfs the tensor, so
  // each element is read on its own.
  auto sparse = std::make_shared<IotaSource>(kCount << 20);
  auto storage = std::make_shared<Storage>(
      Storage{DType::I32, "sparse", uint64_t(kCount) << 20, sparse});
  ASSERT_OK_AND_ASSIGN(column,
                       TensorRef::create(storage, 3, {kCount}, {1 << 20}));
  std::vector<int32_t> values(kCount);
  ASSERT_FALSE(static_cast<bool>(column.read(values.data())));
  for (int64_t i = 0; i < kCount; ++i)
    EXPECT_EQ(values[i], 3 + (i << 20));
  EXPECT_EQ(sparse->reads.load(), kCount);

  // A transposed matrix touches no more than itself: one read of the span.
  auto dense = std::make_shared<IotaSource>(kCount * kCount);
  auto denseStorage = std::make_shared<Storage>(
      Storage{DType::I32, "dense", uint64_t(kCount * kCount), dense});
  ASSERT_OK_AND_ASSIGN(
      transposed,
      TensorRef::create(denseStorage, 0, {kCount, kCount}, {1, kCount}));
  std::vector<int32_t> matrix(kCount * kCount);
  ASSERT_FALSE(static_cast<bool>(transposed.read(matrix.data())));
  EXPECT_EQ(matrix[1], kCount);
  EXPECT_EQ(matrix[kCount], 1);
  EXPECT_EQ(dense->reads.load(), 1);
}

TEST(Tensor, ViewsOutsideTheirStorageAreRefused) {
  auto storage = iotaStorage(6);
  EXPECT_ERROR(TensorRef::create(storage, 0, {2, 4}, {4, 1}),
               "needs 8 elements but the storage holds 6");
  EXPECT_ERROR(TensorRef::create(storage, 4, {3}, {1}),
               "tensor f32[3] in storage 'iota' (strides [1], offset 4)");
  EXPECT_ERROR(TensorRef::create(storage, 0, {3}, {-1}), "negative stride");
  EXPECT_ERROR(TensorRef::create(storage, 0, {-3}, {1}), "negative size");
  EXPECT_ERROR(TensorRef::create(storage, -1, {3}, {1}),
               "negative storage offset");
  EXPECT_ERROR(TensorRef::create(storage, 0, {3, 2}, {1}), "differ in rank");
  EXPECT_ERROR(TensorRef::create(storage, 0, {INT64_MAX, 4}, {1, 1}),
               "overflows");
  EXPECT_ERROR(TensorRef::create(storage, 0, {2, 2}, {INT64_MAX, 1}),
               "needs 9223372036854775809 elements");
  EXPECT_ERROR(TensorRef::create(storage, 0, {4}, {INT64_MAX}), "overflows");
  EXPECT_ERROR(TensorRef::contiguous(storage, {INT64_MAX, INT64_MAX}),
               "too many elements");
  EXPECT_ERROR(TensorRef::create(nullptr, 0, {1}, {1}), "has no storage");
}

TEST(Tensor, ReadChecksTheStorageBytes) {
  auto storage = std::make_shared<Storage>(
      Storage{DType::F32, "short", 4,
              memorySource(std::vector<uint8_t>(12), "short bytes")});
  ASSERT_OK_AND_ASSIGN(tensor, TensorRef::contiguous(storage, {4}));
  std::vector<float> out(4);
  EXPECT_ERROR(tensor.read(out.data()),
               "storage 'short' holds 4 f32 elements, which needs more than "
               "the 12 bytes of short bytes");
  storage->bytes = nullptr;
  EXPECT_ERROR(tensor.read(out.data()), "storage 'short' has no data");
  // A tensor whose fields were changed after creation is re-validated.
  TensorRef broken = tensor;
  broken.shape = {5};
  EXPECT_ERROR(broken.read(out.data()), "needs 5 elements");
}

TEST(DType, Spellings) {
  EXPECT_EQ(dtypeSize(DType::BF16), 2u);
  EXPECT_EQ(dtypeSize(DType::I64), 8u);
  EXPECT_EQ(dtypeSize(DType::Bool), 1u);
  EXPECT_EQ(dtypeName(DType::BF16), "bf16");
  EXPECT_EQ(dtypeFromTorchStorage("BFloat16Storage"), DType::BF16);
  EXPECT_EQ(dtypeFromTorchStorage("CharStorage"), DType::I8);
  EXPECT_EQ(dtypeFromTorchStorage("ComplexFloatStorage"), std::nullopt);
  EXPECT_EQ(dtypeFromTorchName("float16"), DType::F16);
  EXPECT_EQ(dtypeFromSafetensors("BOOL"), DType::Bool);
  EXPECT_EQ(dtypeFromSafetensors("F8_E4M3"), std::nullopt);
}

} // namespace
