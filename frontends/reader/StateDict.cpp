//===- StateDict.cpp - tensors of a nested state dict by dotted name ------===//

#include "frontends/reader/StateDict.h"

#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

using namespace megatron::reader;
using Kind = Value::Kind;

/// Shared sub-values are visited once per path, so a hostile pickle could
/// make the number of paths explode; this bounds the walk.
constexpr uint64_t kMaxVisits = 1ull << 22;

namespace {
class Flattener {
public:
  llvm::Error visit(const Value &value, const std::string &name) {
    if (++visits_ > kMaxVisits)
      return llvm::createStringError(
          llvm::formatv("state dict has more than {0} entries", kMaxVisits)
              .str());
    switch (value.kind()) {
    case Kind::Tensor:
      if (!names_.insert(name).second)
        return llvm::createStringError("state dict names two tensors '" + name +
                                       "'");
      tensors_.push_back(NamedTensor{name, *value.asTensor()});
      return llvm::Error::success();
    case Kind::Dict:
      for (const auto &[key, item] : value.dictItems()) {
        std::optional<std::string> part;
        if (auto text = key->asString())
          part = text->str();
        else if (auto number = key->asInt())
          part = std::to_string(*number);
        if (!part)
          continue;
        if (llvm::Error err = visit(*item, join(name, *part)))
          return err;
      }
      return llvm::Error::success();
    case Kind::List:
    case Kind::Tuple:
      for (size_t i = 0; i < value.elements().size(); ++i)
        if (llvm::Error err =
                visit(*value.elements()[i], join(name, std::to_string(i))))
          return err;
      return llvm::Error::success();
    default:
      return llvm::Error::success();
    }
  }

  std::vector<NamedTensor> take() { return std::move(tensors_); }

private:
  static std::string join(const std::string &prefix, const std::string &part) {
    return prefix.empty() ? part : prefix + "." + part;
  }

  std::vector<NamedTensor> tensors_;
  llvm::StringSet<> names_;
  uint64_t visits_ = 0;
};
} // namespace

llvm::Expected<std::vector<NamedTensor>>
megatron::reader::flattenStateDict(const Value &root, llvm::StringRef prefix) {
  Flattener flattener;
  if (llvm::Error err = flattener.visit(root, prefix.str()))
    return std::move(err);
  return flattener.take();
}
