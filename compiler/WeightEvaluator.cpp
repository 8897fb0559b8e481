//===- WeightEvaluator.cpp - compute weight values from a checkpoint ------===//

#include "compiler/WeightEvaluator.h"

#include "dialects/megatron/MegatronOps.h"
#include "megatron/runtime/Half.h"

#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace megatron;
using llvm::createStringError;
using llvm::formatv;
namespace mm = mlir::megatron;

namespace {

template <typename T, typename Convert>
void convertEach(const void *src, float *dst, size_t count, Convert convert) {
  const auto *in = static_cast<const uint8_t *>(src);
  for (size_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, in + i * sizeof(T), sizeof(T));
    dst[i] = convert(v);
  }
}

int64_t product(llvm::ArrayRef<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// Row-major strides of `shape`, in elements.
llvm::SmallVector<int64_t> stridesOf(llvm::ArrayRef<int64_t> shape) {
  llvm::SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

DenseTensor transpose(const DenseTensor &in, llvm::ArrayRef<int64_t> perm) {
  DenseTensor out;
  for (int64_t p : perm)
    out.shape.push_back(in.shape[p]);
  out.data.resize(in.data.size());
  llvm::SmallVector<int64_t> inStrides = stridesOf(in.shape);
  // Walk the output in order, advancing the input position by the permuted
  // strides, like an odometer.
  llvm::SmallVector<int64_t> index(perm.size(), 0);
  int64_t src = 0;
  for (float &value : out.data) {
    value = in.data[src];
    for (int64_t d = static_cast<int64_t>(perm.size()) - 1; d >= 0; --d) {
      src += inStrides[perm[d]];
      if (++index[d] < out.shape[d])
        break;
      src -= inStrides[perm[d]] * out.shape[d];
      index[d] = 0;
    }
  }
  return out;
}

/// Copies the [start, start + size) block of `dim` of `in` into `out` at
/// `outStart` of the same dimension; shapes agree elsewhere.
void copyBlock(const DenseTensor &in, int64_t dim, int64_t start, int64_t size,
               DenseTensor &out, int64_t outStart) {
  int64_t outer = product(llvm::ArrayRef<int64_t>(in.shape).take_front(dim));
  int64_t inner = product(llvm::ArrayRef<int64_t>(in.shape).drop_front(dim + 1));
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(&out.data[(o * out.shape[dim] + outStart) * inner],
                &in.data[(o * in.shape[dim] + start) * inner],
                size * inner * sizeof(float));
}

/// Result `which` (0: int8 values as floats, 1: scales) of quantizing
/// `in` [rows, cols] with `groups` scales per row.
DenseTensor quantize(const DenseTensor &in, int64_t groups, unsigned which) {
  int64_t rows = in.shape[0], cols = in.shape[1], width = cols / groups;
  DenseTensor values{in.shape, std::vector<float>(in.data.size())};
  DenseTensor scales{{rows, groups}, std::vector<float>(rows * groups)};
  for (int64_t g = 0; g < rows * groups; ++g) {
    const float *w = &in.data[g * width];
    float max = 0;
    for (int64_t i = 0; i < width; ++i)
      max = std::max(max, std::fabs(w[i]));
    float scale = max > 0 ? max / 127.0f : 1.0f;
    scales.data[g] = scale;
    for (int64_t i = 0; i < width; ++i)
      values.data[g * width + i] = std::clamp(std::round(w[i] / scale), -127.0f, 127.0f);
  }
  return which == 0 ? std::move(values) : std::move(scales);
}

class Evaluator {
public:
  explicit Evaluator(const Checkpoint &ckpt) : ckpt(ckpt) {}

  llvm::Expected<DenseTensor> eval(mlir::Value value) {
    mlir::Operation *op = value.getDefiningOp();
    if (!op)
      return createStringError("a weight value depends on a function argument");
    return llvm::TypeSwitch<mlir::Operation *, llvm::Expected<DenseTensor>>(op)
        .Case([&](mm::WeightOp w) { return read(w); })
        .Case([&](mm::TransposeOp t) -> llvm::Expected<DenseTensor> {
          auto in = eval(t.getInput());
          if (!in)
            return in.takeError();
          return transpose(*in, t.getPermutation());
        })
        .Case([&](mm::ReshapeOp r) -> llvm::Expected<DenseTensor> {
          auto in = eval(r.getInput());
          if (!in)
            return in.takeError();
          in->shape.assign(r.getType().getShape().begin(),
                           r.getType().getShape().end());
          return std::move(*in);
        })
        .Case([&](mm::SliceOp s) -> llvm::Expected<DenseTensor> {
          auto in = eval(s.getInput());
          if (!in)
            return in.takeError();
          DenseTensor out;
          out.shape = in->shape;
          out.shape[s.getDim()] = s.getSize();
          out.data.resize(product(out.shape));
          copyBlock(*in, s.getDim(), s.getStart(), s.getSize(), out, 0);
          return out;
        })
        .Case([&](mm::ConcatOp c) -> llvm::Expected<DenseTensor> {
          DenseTensor out;
          out.shape.assign(c.getType().getShape().begin(),
                           c.getType().getShape().end());
          out.data.resize(product(out.shape));
          int64_t offset = 0;
          for (mlir::Value input : c.getInputs()) {
            auto in = eval(input);
            if (!in)
              return in.takeError();
            int64_t size = in->shape[c.getDim()];
            copyBlock(*in, c.getDim(), 0, size, out, offset);
            offset += size;
          }
          return out;
        })
        .Case([&](mm::QuantizeOp q) -> llvm::Expected<DenseTensor> {
          auto in = eval(q.getInput());
          if (!in)
            return in.takeError();
          return quantize(*in, q.getScales().getType().getDimSize(1),
                          mlir::cast<mlir::OpResult>(value).getResultNumber());
        })
        .Case([&](mm::DequantizeOp d) -> llvm::Expected<DenseTensor> {
          auto values = eval(d.getValues());
          if (!values)
            return values.takeError();
          auto scales = eval(d.getScales());
          if (!scales)
            return scales.takeError();
          int64_t width = values->shape[1] / scales->shape[1];
          for (size_t i = 0; i < values->data.size(); ++i)
            values->data[i] *= scales->data[i / width];
          return std::move(*values);
        })
        .Default([&](mlir::Operation *other) -> llvm::Expected<DenseTensor> {
          return createStringError(formatv(
              "'{0}' is not a weight transform", other->getName()));
        });
  }

private:
  llvm::Expected<DenseTensor> read(mm::WeightOp op) {
    const TensorInfo *info = ckpt.find(op.getName());
    if (info && llvm::ArrayRef<int64_t>(info->shape) != op.getType().getShape())
      return createStringError(formatv(
          "checkpoint tensor '{0}' does not have the shape the IR expects",
          op.getName()));
    return readTensorF32(ckpt, op.getName());
  }

  const Checkpoint &ckpt;
};
} // namespace

llvm::Error megatron::convertToF32(reader::DType dtype, const void *src,
                                   float *dst, size_t count) {
  switch (dtype) {
  case reader::DType::F32:
    std::memcpy(dst, src, count * sizeof(float));
    return llvm::Error::success();
  case reader::DType::F64:
    convertEach<double>(src, dst, count,
                        [](double v) { return static_cast<float>(v); });
    return llvm::Error::success();
  case reader::DType::F16:
    convertEach<uint16_t>(src, dst, count, runtime::halfToFloat);
    return llvm::Error::success();
  case reader::DType::BF16:
    convertEach<uint16_t>(src, dst, count, runtime::bfloat16ToFloat);
    return llvm::Error::success();
  default:
    return createStringError(formatv("{0} is not a floating-point weight type",
                                     reader::dtypeName(dtype)));
  }
}

llvm::Expected<DenseTensor> megatron::readTensorF32(const Checkpoint &ckpt,
                                                    llvm::StringRef name) {
  const TensorInfo *info = ckpt.find(name);
  if (!info)
    return createStringError(formatv("checkpoint '{0}' has no tensor '{1}'",
                                     ckpt.path(), name));
  size_t count = product(info->shape);
  std::vector<uint8_t> raw(count * reader::dtypeSize(info->dtype));
  if (auto err = ckpt.read(name, raw.data()))
    return std::move(err);
  DenseTensor out;
  out.shape = info->shape;
  out.data.resize(count);
  if (auto err = convertToF32(info->dtype, raw.data(), out.data.data(), count))
    return createStringError(formatv("checkpoint tensor '{0}': {1}", name,
                                     llvm::toString(std::move(err))));
  return out;
}

bool megatron::isWeightValue(mlir::Value value) {
  mlir::Operation *op = value.getDefiningOp();
  if (!op)
    return false;
  if (mlir::isa<mm::WeightOp>(op))
    return true;
  if (!mlir::isa<mm::TransposeOp, mm::ReshapeOp, mm::SliceOp, mm::ConcatOp,
                 mm::QuantizeOp, mm::DequantizeOp>(op))
    return false;
  // Weight reshapes are static: they carry no dynamic sizes.
  return llvm::all_of(op->getOperands(), isWeightValue);
}

llvm::Expected<DenseTensor> megatron::evaluateWeight(mlir::Value value,
                                                     const Checkpoint &ckpt) {
  if (!isWeightValue(value))
    return createStringError("the value is not computed from weights alone");
  return Evaluator(ckpt).eval(value);
}
