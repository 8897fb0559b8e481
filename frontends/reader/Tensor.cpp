//===- Tensor.cpp - lazily read checkpoint tensors ------------------------===//

#include "frontends/reader/Tensor.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <cstring>

using namespace megatron::reader;
using llvm::formatv;

// Checkpoints store little-endian data and `read` copies it unchanged.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the checkpoint readers assume a little-endian host");

static std::string formatList(llvm::ArrayRef<int64_t> values) {
  return "[" +
         llvm::join(llvm::map_range(
                        values, [](int64_t v) { return std::to_string(v); }),
                    ", ") +
         "]";
}

llvm::Error Storage::checkBytes() const {
  if (!bytes)
    return llvm::createStringError("storage '" + key + "' has no data");
  uint64_t needed;
  if (__builtin_mul_overflow(numel, dtypeSize(dtype), &needed) ||
      bytes->size() < needed)
    return llvm::createStringError(
        formatv("storage '{0}' holds {1} {2} elements, which needs more than "
                "the {3} bytes of {4}",
                key, numel, dtypeName(dtype), bytes->size(), bytes->describe())
            .str());
  return llvm::Error::success();
}

llvm::Expected<TensorRef> TensorRef::create(std::shared_ptr<Storage> storage,
                                            int64_t storageOffset,
                                            std::vector<int64_t> shape,
                                            std::vector<int64_t> strides) {
  TensorRef tensor;
  tensor.dtype = storage ? storage->dtype : DType::U8;
  tensor.shape = std::move(shape);
  tensor.strides = std::move(strides);
  tensor.storageOffset = storageOffset;
  tensor.storage = std::move(storage);
  if (llvm::Error err = tensor.validate())
    return std::move(err);
  return tensor;
}

llvm::Expected<TensorRef>
TensorRef::contiguous(std::shared_ptr<Storage> storage,
                      std::vector<int64_t> shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    if (shape[d] > 0 && __builtin_mul_overflow(stride, shape[d], &stride))
      return llvm::createStringError(
          formatv("tensor of shape {0} in storage '{1}': too many elements",
                  formatList(shape), storage ? storage->key : "<none>")
              .str());
  }
  return create(std::move(storage), 0, std::move(shape), std::move(strides));
}

uint64_t TensorRef::numel() const {
  uint64_t count = 1;
  for (int64_t size : shape)
    count *= static_cast<uint64_t>(size);
  return count;
}

uint64_t TensorRef::nbytes() const { return numel() * dtypeSize(dtype); }

namespace {
/// The trailing dimensions that are laid out contiguously in storage collapse
/// into runs of `run` adjacent elements; only dimensions [0, outer) need to
/// be stepped through one index at a time.
struct RunLayout {
  size_t outer;
  uint64_t run;
};
} // namespace

static RunLayout runLayout(const TensorRef &tensor) {
  RunLayout layout{tensor.shape.size(), 1};
  while (layout.outer > 0) {
    size_t d = layout.outer - 1;
    uint64_t size = static_cast<uint64_t>(tensor.shape[d]);
    if (size != 1 && static_cast<uint64_t>(tensor.strides[d]) != layout.run)
      break;
    layout.run *= size;
    --layout.outer;
  }
  return layout;
}

bool TensorRef::isContiguous() const {
  return shape.size() == strides.size() && runLayout(*this).outer == 0;
}

std::string TensorRef::describe() const {
  return formatv("{0}{1} in storage '{2}'", dtypeName(dtype), formatList(shape),
                 storage ? storage->key : "<none>")
      .str();
}

llvm::Error TensorRef::validate() const {
  auto fail = [&](const llvm::Twine &why) {
    return llvm::createStringError(
        formatv("tensor {0} (strides {1}, offset {2}): {3}", describe(),
                formatList(strides), storageOffset, why.str())
            .str());
  };
  if (!storage)
    return fail("has no storage");
  if (dtype != storage->dtype)
    return fail(llvm::Twine("storage holds ") + dtypeName(storage->dtype));
  if (shape.size() != strides.size())
    return fail("shape and strides differ in rank");
  if (shape.size() > kMaxTensorRank)
    return fail(llvm::Twine("more than ") + llvm::Twine(kMaxTensorRank) +
                " dimensions");
  if (storageOffset < 0)
    return fail("negative storage offset");
  uint64_t count = 1, lastIndex = static_cast<uint64_t>(storageOffset);
  bool overflow = false;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0)
      return fail("negative size");
    if (strides[d] < 0)
      return fail("negative stride");
    uint64_t size = static_cast<uint64_t>(shape[d]), step;
    overflow |= __builtin_mul_overflow(count, size, &count);
    if (size != 0) {
      overflow |= __builtin_mul_overflow(
          size - 1, static_cast<uint64_t>(strides[d]), &step);
      overflow |= __builtin_add_overflow(lastIndex, step, &lastIndex);
    }
  }
  uint64_t bytes;
  overflow |= __builtin_mul_overflow(count, dtypeSize(dtype), &bytes);
  if (overflow || count > static_cast<uint64_t>(INT64_MAX))
    return fail("size arithmetic overflows");
  if (count != 0 && lastIndex >= storage->numel)
    return fail(formatv("needs {0} elements but the storage holds {1}",
                        lastIndex + 1, storage->numel)
                    .str());
  return llvm::Error::success();
}

/// A strided read whose span of storage is at most twice the tensor plus this
/// much reads the span once and gathers in memory (e.g. a transposed weight);
/// sparser views read run by run rather than buffer mostly unused bytes.
constexpr uint64_t kGatherSlack = 64ull << 20;

llvm::Error TensorRef::read(void *dst) const {
  if (llvm::Error err = validate())
    return err;
  if (llvm::Error err = storage->checkBytes())
    return llvm::createStringError(describe() + ": " +
                                   llvm::toString(std::move(err)));
  uint64_t count = numel();
  if (count == 0)
    return llvm::Error::success();
  const uint64_t item = dtypeSize(dtype);
  const ByteSource &bytes = *storage->bytes;
  const uint64_t first = static_cast<uint64_t>(storageOffset);
  RunLayout layout = runLayout(*this);
  if (layout.outer == 0)
    return bytes.read(first * item, count * item, dst);

  // Element index of the last element; validate() showed it fits.
  uint64_t last = first;
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] > 0)
      last += static_cast<uint64_t>(shape[d] - 1) * strides[d];
  uint64_t spanBytes = (last - first + 1) * item;

  std::vector<uint8_t> span;
  if ((spanBytes - std::min(spanBytes, kGatherSlack)) / 2 <= count * item) {
    span.resize(spanBytes);
    if (llvm::Error err = bytes.read(first * item, spanBytes, span.data()))
      return err;
  }
  // Copies `n` elements starting at storage element `at` to `out`, from the
  // span when it was read, else straight from the source.
  auto copyRun = [&](uint64_t at, uint64_t n, uint8_t *out) -> llvm::Error {
    if (!span.empty()) {
      std::memcpy(out, span.data() + (at - first) * item, n * item);
      return llvm::Error::success();
    }
    return bytes.read(at * item, n * item, out);
  };

  // Step an odometer over the outer dimensions, one run per position.
  std::vector<int64_t> index(layout.outer, 0);
  uint64_t at = first;
  auto *out = static_cast<uint8_t *>(dst);
  for (uint64_t done = 0; done < count; done += layout.run) {
    if (llvm::Error err = copyRun(at, layout.run, out))
      return err;
    out += layout.run * item;
    for (size_t d = layout.outer; d-- > 0;) {
      at += strides[d];
      if (++index[d] < shape[d])
        break;
      at -= static_cast<uint64_t>(strides[d]) * shape[d];
      index[d] = 0;
    }
  }
  return llvm::Error::success();
}
