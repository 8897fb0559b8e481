//===- Value.cpp - the object tree a restricted unpickler builds ----------===//

#include "frontends/reader/Value.h"

#include "llvm/Support/FormatVariadic.h"

using namespace megatron::reader;
using llvm::formatv;

std::shared_ptr<Value> Value::make(Kind kind, Payload payload) {
  return std::shared_ptr<Value>(new Value(kind, std::move(payload)));
}

std::shared_ptr<Value> Value::none() { return make(Kind::None, {}); }
std::shared_ptr<Value> Value::boolean(bool value) {
  return make(Kind::Bool, value);
}
std::shared_ptr<Value> Value::integer(int64_t value) {
  return make(Kind::Int, value);
}
std::shared_ptr<Value> Value::bigInteger(std::string digits) {
  return make(Kind::BigInt, std::move(digits));
}
std::shared_ptr<Value> Value::floating(double value) {
  return make(Kind::Float, value);
}
std::shared_ptr<Value> Value::string(std::string text) {
  return make(Kind::String, std::move(text));
}
std::shared_ptr<Value> Value::bytes(std::string data) {
  return make(Kind::Bytes, std::move(data));
}
std::shared_ptr<Value> Value::empty(Kind kind) {
  if (kind == Kind::Dict)
    return make(kind, DictData());
  return make(kind, std::vector<ValuePtr>());
}
std::shared_ptr<Value> Value::global(std::string module, std::string name) {
  return make(Kind::Global, Named{std::move(module), std::move(name), {}, {}});
}
std::shared_ptr<Value> Value::storage(std::shared_ptr<Storage> storage) {
  return make(Kind::Storage, std::move(storage));
}
std::shared_ptr<Value> Value::tensor(TensorRef tensor) {
  return make(Kind::Tensor, std::move(tensor));
}

llvm::Expected<std::shared_ptr<Value>>
Value::sequence(Kind kind, std::vector<ValuePtr> elements) {
  std::shared_ptr<Value> value = empty(kind);
  for (const ValuePtr &element : elements)
    if (llvm::Error err = value->adopt(element))
      return std::move(err);
  value->payload_ = std::move(elements);
  return value;
}

llvm::Expected<std::shared_ptr<Value>>
Value::object(std::string module, std::string name, ValuePtr args) {
  std::shared_ptr<Value> value = make(Kind::Object, Named());
  if (llvm::Error err = value->adopt(args))
    return std::move(err);
  value->payload_ =
      Named{std::move(module), std::move(name), std::move(args), nullptr};
  return value;
}

//===----------------------------------------------------------------------===//
// Building
//===----------------------------------------------------------------------===//

llvm::Error Value::checkMutable(llvm::StringRef what) const {
  if (adopted_)
    return llvm::createStringError(
        formatv("cannot {0} {1} after it was placed inside another value "
                "(a recursive structure?)",
                what, describe())
            .str());
  return llvm::Error::success();
}

llvm::Error Value::adopt(const ValuePtr &child) {
  if (child.get() == this)
    return llvm::createStringError(describe() + " cannot contain itself");
  if (child->depth_ + 1 > kMaxValueDepth)
    return llvm::createStringError(
        formatv("values nest deeper than {0} levels", kMaxValueDepth).str());
  child->adopted_ = true;
  depth_ = std::max(depth_, child->depth_ + 1);
  return llvm::Error::success();
}

llvm::Error Value::append(ValuePtr element) {
  auto *elements = std::get_if<std::vector<ValuePtr>>(&payload_);
  if (!elements || kind_ == Kind::Tuple)
    return llvm::createStringError("cannot append to " + describe());
  if (llvm::Error err = checkMutable("append to"))
    return err;
  if (llvm::Error err = adopt(element))
    return err;
  elements->push_back(std::move(element));
  return llvm::Error::success();
}

/// The index key of a str or int dict key; Python treats equal ones as the
/// same key.
static std::optional<std::string> indexKey(const Value &key) {
  if (auto text = key.asString())
    return "s" + text->str();
  if (auto number = key.asInt())
    return "i" + std::to_string(*number);
  return std::nullopt;
}

llvm::Error Value::setItem(ValuePtr key, ValuePtr value) {
  auto *dict = std::get_if<DictData>(&payload_);
  if (!dict)
    return llvm::createStringError("cannot set an item of " + describe());
  if (llvm::Error err = checkMutable("set an item of"))
    return err;
  if (llvm::Error err = adopt(key))
    return err;
  if (llvm::Error err = adopt(value))
    return err;
  std::optional<std::string> slot = indexKey(*key);
  if (slot) {
    auto [found, inserted] = dict->index.try_emplace(*slot, dict->items.size());
    if (!inserted) {
      dict->items[found->second].second = std::move(value);
      return llvm::Error::success();
    }
  }
  dict->items.emplace_back(std::move(key), std::move(value));
  return llvm::Error::success();
}

llvm::Error Value::setState(ValuePtr state) {
  ValuePtr *slot = nullptr;
  if (auto *named = std::get_if<Named>(&payload_); named && isObject())
    slot = &named->state;
  else if (auto *dict = std::get_if<DictData>(&payload_))
    slot = &dict->state;
  if (!slot)
    return llvm::createStringError("cannot set the state of " + describe());
  if (*slot)
    return llvm::createStringError("the state of " + describe() +
                                   " is set twice");
  if (llvm::Error err = checkMutable("set the state of"))
    return err;
  if (llvm::Error err = adopt(state))
    return err;
  *slot = std::move(state);
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Access
//===----------------------------------------------------------------------===//

std::optional<bool> Value::asBool() const {
  if (kind_ != Kind::Bool)
    return std::nullopt;
  return std::get<bool>(payload_);
}

std::optional<int64_t> Value::asInt() const {
  if (kind_ != Kind::Int)
    return std::nullopt;
  return std::get<int64_t>(payload_);
}

std::optional<double> Value::asFloat() const {
  if (kind_ == Kind::Float)
    return std::get<double>(payload_);
  if (kind_ == Kind::Int)
    return static_cast<double>(std::get<int64_t>(payload_));
  return std::nullopt;
}

std::optional<llvm::StringRef> Value::asString() const {
  if (kind_ != Kind::String)
    return std::nullopt;
  return llvm::StringRef(std::get<std::string>(payload_));
}

std::optional<llvm::StringRef> Value::asBytes() const {
  if (kind_ != Kind::Bytes)
    return std::nullopt;
  return llvm::StringRef(std::get<std::string>(payload_));
}

std::optional<llvm::StringRef> Value::asBigInt() const {
  if (kind_ != Kind::BigInt)
    return std::nullopt;
  return llvm::StringRef(std::get<std::string>(payload_));
}

std::optional<DType> Value::asTorchDType() const {
  if (kind_ != Kind::Global || module() != "torch")
    return std::nullopt;
  return dtypeFromTorchName(name());
}

const TensorRef *Value::asTensor() const {
  return std::get_if<TensorRef>(&payload_);
}

std::shared_ptr<Storage> Value::asStorage() const {
  auto *storage = std::get_if<std::shared_ptr<Storage>>(&payload_);
  return storage ? *storage : nullptr;
}

llvm::ArrayRef<ValuePtr> Value::elements() const {
  if (auto *elements = std::get_if<std::vector<ValuePtr>>(&payload_))
    return *elements;
  return {};
}

llvm::ArrayRef<Value::DictItem> Value::dictItems() const {
  if (auto *dict = std::get_if<DictData>(&payload_))
    return dict->items;
  return {};
}

const Value *Value::dictGet(llvm::StringRef key) const {
  auto *dict = std::get_if<DictData>(&payload_);
  if (!dict)
    return nullptr;
  auto found = dict->index.find("s" + key.str());
  return found == dict->index.end() ? nullptr
                                    : dict->items[found->second].second.get();
}

const Value *Value::dictGet(int64_t key) const {
  auto *dict = std::get_if<DictData>(&payload_);
  if (!dict)
    return nullptr;
  auto found = dict->index.find("i" + std::to_string(key));
  return found == dict->index.end() ? nullptr
                                    : dict->items[found->second].second.get();
}

llvm::StringRef Value::module() const {
  auto *named = std::get_if<Named>(&payload_);
  return named ? llvm::StringRef(named->module) : llvm::StringRef();
}

llvm::StringRef Value::name() const {
  auto *named = std::get_if<Named>(&payload_);
  return named ? llvm::StringRef(named->name) : llvm::StringRef();
}

std::string Value::qualifiedName() const {
  return (module() + "." + name()).str();
}

const Value *Value::objectArgs() const {
  auto *named = std::get_if<Named>(&payload_);
  return named ? named->args.get() : nullptr;
}

const Value *Value::state() const {
  if (auto *named = std::get_if<Named>(&payload_))
    return named->state.get();
  if (auto *dict = std::get_if<DictData>(&payload_))
    return dict->state.get();
  return nullptr;
}

const Value *Value::attr(llvm::StringRef name) const {
  const Value *attributes = state();
  return attributes ? attributes->dictGet(name) : nullptr;
}

std::string Value::describe() const {
  constexpr size_t kShownChars = 60;
  switch (kind_) {
  case Kind::None:
    return "None";
  case Kind::Bool:
    return std::get<bool>(payload_) ? "True" : "False";
  case Kind::Int:
    return "int " + std::to_string(std::get<int64_t>(payload_));
  case Kind::BigInt:
    return "int " + std::get<std::string>(payload_);
  case Kind::Float:
    return formatv("float {0}", std::get<double>(payload_)).str();
  case Kind::String: {
    const std::string &text = std::get<std::string>(payload_);
    if (text.size() <= kShownChars)
      return "str '" + text + "'";
    return "str '" + text.substr(0, kShownChars) + "...'";
  }
  case Kind::Bytes:
    return formatv("bytes[{0}]", std::get<std::string>(payload_).size());
  case Kind::List:
    return formatv("list[{0}]", elements().size());
  case Kind::Tuple:
    return formatv("tuple[{0}]", elements().size());
  case Kind::Set:
    return formatv("set[{0}]", elements().size());
  case Kind::Dict:
    return formatv("dict[{0}]", dictItems().size());
  case Kind::Global:
    return "global " + qualifiedName();
  case Kind::Object:
    return qualifiedName() + " object";
  case Kind::Storage: {
    std::shared_ptr<Storage> storage = asStorage();
    if (!storage)
      return "storage";
    return formatv("storage '{0}' ({1} x {2})", storage->key,
                   dtypeName(storage->dtype), storage->numel);
  }
  case Kind::Tensor:
    return "tensor " + asTensor()->describe();
  }
  return "value";
}
