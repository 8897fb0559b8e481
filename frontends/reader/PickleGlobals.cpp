//===- PickleGlobals.cpp - the globals a checkpoint pickle may name -------===//

#include "frontends/reader/PickleGlobals.h"

#include "llvm/Support/ConvertUTF.h"
#include "llvm/Support/FormatVariadic.h"

using namespace megatron::reader;
using llvm::formatv;
using Kind = Value::Kind;

namespace {
/// What calling an allowed global produces.
enum class Call {
  NotCallable,      ///< only passed around: dtypes, storage types, classes
  Instance,         ///< an opaque Object remembering its arguments
  OrderedDict,      ///< a Dict
  Set,              ///< set/frozenset: a Set
  Bytes,            ///< bytes/bytearray/_codecs.encode: Bytes
  Size,             ///< torch.Size: a Tuple
  RebuildTensor,    ///< _rebuild_tensor(_v2): a Tensor
  RebuildParameter, ///< nn.Parameter: the Tensor it wraps
  RebuildFromType,  ///< a tensor subclass or one with Python attributes
  Reconstructor,    ///< copyreg._reconstructor: protocol 0/1 instances
  GetAttr,          ///< getattr(global, name): another allowed global
};

struct GlobalRule {
  llvm::StringRef module;
  llvm::StringRef name;
  Call call;
};

// Wildcards usable in the table below.
constexpr llvm::StringLiteral kAnyName = "*";
/// torch.<X>Storage for a dtype DType.h knows, and torch.UntypedStorage.
constexpr llvm::StringLiteral kAnyStorageType = "<storage type>";
/// torch.float16 and the other dtypes DType.h knows.
constexpr llvm::StringLiteral kAnyDType = "<dtype>";
/// Enum modules inside Megatron (megatron.model.enums,
/// megatron.core.transformer.enums, ...), which its saved args reference.
constexpr llvm::StringLiteral kMegatronEnums = "megatron.<...>.enums";

/// The allow-list: everything a torch/Megatron checkpoint legitimately names.
constexpr GlobalRule kAllowedGlobals[] = {
    {"collections", "OrderedDict", Call::OrderedDict},
    {"builtins", "set", Call::Set},
    {"builtins", "frozenset", Call::Set},
    {"builtins", "bytes", Call::Bytes},
    {"builtins", "bytearray", Call::Bytes},
    {"_codecs", "encode", Call::Bytes}, // bytes under pickle protocol < 3
    {"builtins", "object", Call::NotCallable},
    {"copyreg", "_reconstructor", Call::Reconstructor},
    {"builtins", "getattr", Call::GetAttr},    // enum members since Python 3.11
    {"argparse", "Namespace", Call::Instance}, // Megatron's `args`
    {"_io", "BytesIO", Call::Instance},        // `_extra_state` entries
    {"torch._utils", "_rebuild_tensor", Call::RebuildTensor},
    {"torch._utils", "_rebuild_tensor_v2", Call::RebuildTensor},
    {"torch._utils", "_rebuild_parameter", Call::RebuildParameter},
    {"torch._utils", "_rebuild_parameter_with_state", Call::RebuildParameter},
    {"torch._tensor", "_rebuild_from_type", Call::RebuildFromType},
    {"torch._tensor", "_rebuild_from_type_v2", Call::RebuildFromType},
    {"torch", "Tensor", Call::NotCallable},
    {"torch.nn.parameter", "Parameter", Call::NotCallable},
    {"torch", "Size", Call::Size},
    {"torch", "device", Call::Instance},
    {"torch", kAnyStorageType, Call::NotCallable},
    {"torch", kAnyDType, Call::NotCallable},
    // numpy.random.get_state() in Megatron's rng_state.
    {"numpy.core.multiarray", "_reconstruct", Call::Instance},
    {"numpy.core.multiarray", "scalar", Call::Instance},
    {"numpy", "ndarray", Call::NotCallable},
    {"numpy", "dtype", Call::Instance},
    {kMegatronEnums, kAnyName, Call::Instance},
};

/// Other spellings of allowed modules: Python 2 names (pickle protocol < 3
/// writes them), numpy 2's module, CUDA storage types of old torch, and
/// where UntypedStorage is defined.
constexpr std::pair<llvm::StringLiteral, llvm::StringLiteral> kModuleAliases[] =
    {
        {"__builtin__", "builtins"},
        {"copy_reg", "copyreg"},
        {"numpy._core.multiarray", "numpy.core.multiarray"},
        {"torch.cuda", "torch"},
        {"torch.storage", "torch"},
};
} // namespace

static bool matches(const GlobalRule &rule, llvm::StringRef module,
                    llvm::StringRef name) {
  bool moduleMatches =
      rule.module == kMegatronEnums
          ? module.starts_with("megatron.") && module.ends_with(".enums")
          : module == rule.module;
  if (!moduleMatches)
    return false;
  if (rule.name == kAnyName)
    return true;
  if (rule.name == kAnyStorageType)
    return name == "UntypedStorage" || dtypeFromTorchStorage(name).has_value();
  if (rule.name == kAnyDType)
    return dtypeFromTorchName(name).has_value();
  return rule.name == name;
}

static llvm::StringRef canonicalModule(llvm::StringRef module) {
  for (const auto &[alias, canonical] : kModuleAliases)
    if (module == alias)
      return canonical;
  return module;
}

static const GlobalRule *findRule(llvm::StringRef module,
                                  llvm::StringRef name) {
  for (const GlobalRule &rule : kAllowedGlobals)
    if (matches(rule, module, name))
      return &rule;
  return nullptr;
}

llvm::Expected<std::shared_ptr<Value>>
megatron::reader::resolveGlobal(llvm::StringRef module, llvm::StringRef name) {
  llvm::StringRef canonical = canonicalModule(module);
  if (!findRule(canonical, name))
    return llvm::createStringError(
        formatv("refusing global '{0}.{1}' (not on the allow-list)", module,
                name)
            .str());
  return Value::global(canonical.str(), name.str());
}

//===----------------------------------------------------------------------===//
// Calls
//===----------------------------------------------------------------------===//

namespace {
/// The arguments of one call, with messages that name the callee.
class CallArgs {
public:
  CallArgs(const Value &callee, ValuePtr args)
      : callee_(callee.qualifiedName()), args_(std::move(args)) {}

  const ValuePtr &tuple() const { return args_; }
  size_t size() const { return args_->elements().size(); }
  const Value &operator[](size_t i) const { return *args_->elements()[i]; }

  llvm::Error error(const llvm::Twine &why) const {
    return llvm::createStringError(callee_ + ": " + why.str());
  }
  /// Requires between `min` and `max` arguments.
  llvm::Error expectCount(size_t min, size_t max) const {
    if (size() >= min && size() <= max)
      return llvm::Error::success();
    return error(formatv("expects {0}{1} arguments, got {2}", min,
                         max == min ? "" : formatv(" to {0}", max).str(),
                         size())
                     .str());
  }
  llvm::Expected<std::vector<int64_t>> ints(size_t i,
                                            llvm::StringRef what) const {
    const Value &list = (*this)[i];
    if (list.kind() != Kind::Tuple && list.kind() != Kind::List)
      return error(what + " is " + list.describe() + ", not a tuple");
    std::vector<int64_t> result;
    for (const ValuePtr &element : list.elements()) {
      std::optional<int64_t> number = element->asInt();
      if (!number)
        return error(what + " holds " + element->describe());
      result.push_back(*number);
    }
    return result;
  }

private:
  std::string callee_;
  ValuePtr args_;
};
} // namespace

/// `text` (UTF-8) encoded as Python's str.encode(encoding) would.
static llvm::Expected<std::string> encodeText(const CallArgs &args,
                                              llvm::StringRef text,
                                              llvm::StringRef encoding) {
  std::string lower = encoding.lower();
  if (lower == "utf-8" || lower == "utf8")
    return text.str();
  if (lower != "latin1" && lower != "latin-1" && lower != "iso-8859-1")
    return args.error("unsupported encoding '" + encoding + "'");
  std::vector<llvm::UTF32> codePoints(text.size());
  const llvm::UTF8 *in = text.bytes_begin();
  llvm::UTF32 *out = codePoints.data();
  if (llvm::ConvertUTF8toUTF32(&in, text.bytes_end(), &out,
                               codePoints.data() + codePoints.size(),
                               llvm::strictConversion) != llvm::conversionOK)
    return args.error("text is not valid UTF-8");
  std::string bytes;
  for (const llvm::UTF32 *c = codePoints.data(); c != out; ++c) {
    if (*c > 0xFF)
      return args.error("text does not fit latin-1");
    bytes.push_back(static_cast<char>(*c));
  }
  return bytes;
}

static llvm::Expected<std::shared_ptr<Value>> makeBytes(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(0, 2))
    return std::move(err);
  if (args.size() == 0)
    return Value::bytes("");
  if (args.size() == 1) {
    if (auto data = args[0].asBytes())
      return Value::bytes(data->str());
    return args.error("cannot make bytes from " + args[0].describe());
  }
  std::optional<llvm::StringRef> text = args[0].asString();
  std::optional<llvm::StringRef> encoding = args[1].asString();
  if (!text || !encoding)
    return args.error("expects (str, encoding), got (" + args[0].describe() +
                      ", " + args[1].describe() + ")");
  auto bytes = encodeText(args, *text, *encoding);
  if (!bytes)
    return bytes.takeError();
  return Value::bytes(std::move(*bytes));
}

static llvm::Expected<std::shared_ptr<Value>>
makeOrderedDict(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(0, 1))
    return std::move(err);
  std::shared_ptr<Value> dict = Value::empty(Kind::Dict);
  if (args.size() == 0)
    return dict;
  // Python 2 pickled OrderedDict([[key, value], ...]).
  for (const ValuePtr &pair : args[0].elements()) {
    llvm::ArrayRef<ValuePtr> kv = pair->elements();
    if (kv.size() != 2)
      return args.error("item " + pair->describe() + " is not a pair");
    if (llvm::Error err = dict->setItem(kv[0], kv[1]))
      return std::move(err);
  }
  return dict;
}

static llvm::Expected<std::shared_ptr<Value>> makeSet(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(0, 1))
    return std::move(err);
  if (args.size() == 0)
    return Value::empty(Kind::Set);
  Kind kind = args[0].kind();
  if (kind != Kind::List && kind != Kind::Tuple && kind != Kind::Set)
    return args.error("cannot make a set from " + args[0].describe());
  return Value::sequence(Kind::Set, args[0].elements().vec());
}

/// _rebuild_tensor(storage, storage_offset, size, stride) and
/// _rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata]).
static llvm::Expected<std::shared_ptr<Value>>
rebuildTensor(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(4, 7))
    return std::move(err);
  std::shared_ptr<Storage> storage = args[0].asStorage();
  if (!storage)
    return args.error("expects a storage, got " + args[0].describe());
  std::optional<int64_t> offset = args[1].asInt();
  if (!offset)
    return args.error("storage offset is " + args[1].describe());
  auto shape = args.ints(2, "size");
  if (!shape)
    return shape.takeError();
  auto strides = args.ints(3, "stride");
  if (!strides)
    return strides.takeError();
  auto tensor = TensorRef::create(std::move(storage), *offset,
                                  std::move(*shape), std::move(*strides));
  if (!tensor)
    return args.error(llvm::toString(tensor.takeError()));
  return Value::tensor(std::move(*tensor));
}

/// Parameter(data, requires_grad, hooks[, state]) is just its data here.
static llvm::Expected<std::shared_ptr<Value>>
rebuildParameter(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(3, 4))
    return std::move(err);
  const TensorRef *data = args[0].asTensor();
  if (!data)
    return args.error("expects a tensor, got " + args[0].describe());
  return Value::tensor(*data);
}

/// What `value` does when called; None unless it is an allowed Global.
static std::optional<Call> callOf(const Value &value) {
  if (value.kind() != Kind::Global)
    return std::nullopt;
  const GlobalRule *rule = findRule(value.module(), value.name());
  return rule ? std::optional<Call>(rule->call) : std::nullopt;
}

/// _rebuild_from_type_v2(func, type, args, state): `func(*args)`, dropping
/// the subclass and its Python attributes (Megatron tags parameters with
/// tensor_model_parallel and the like).
static llvm::Expected<std::shared_ptr<Value>>
rebuildFromType(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(4, 4))
    return std::move(err);
  const Value &func = args[0];
  std::optional<Call> call = callOf(func);
  if (call != Call::RebuildTensor && call != Call::RebuildParameter)
    return args.error("expects a tensor rebuild function, got " +
                      func.describe());
  if (args[1].kind() != Kind::Global)
    return args.error("expects a tensor type, got " + args[1].describe());
  if (args[2].kind() != Kind::Tuple)
    return args.error("expects an argument tuple, got " + args[2].describe());
  return callGlobal(func, args.tuple()->elements()[2]);
}

/// copyreg._reconstructor(cls, object, state) creates a bare `cls`.
static llvm::Expected<std::shared_ptr<Value>>
reconstruct(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(3, 3))
    return std::move(err);
  if (args[0].kind() != Kind::Global)
    return args.error("expects a class, got " + args[0].describe());
  if (args[1].kind() != Kind::Global ||
      args[1].qualifiedName() != "builtins.object")
    return args.error("only supports instances of plain classes, not of " +
                      args[1].describe());
  auto noArgs = Value::sequence(Kind::Tuple, {});
  if (!noArgs)
    return noArgs.takeError();
  auto instance = callGlobal(args[0], std::move(*noArgs));
  if (!instance || args[2].isNone())
    return instance;
  if (llvm::Error err = (*instance)->setState(args.tuple()->elements()[2]))
    return std::move(err);
  return instance;
}

/// getattr(global, 'name') is the global "module.qualname.name", which must
/// itself be allowed (Python 3.11+ pickles enum members this way).
static llvm::Expected<std::shared_ptr<Value>> getAttr(const CallArgs &args) {
  if (llvm::Error err = args.expectCount(2, 2))
    return std::move(err);
  std::optional<llvm::StringRef> attribute = args[1].asString();
  if (args[0].kind() != Kind::Global || !attribute)
    return args.error("only looks up names of globals, not " +
                      args[1].describe() + " of " + args[0].describe());
  return resolveGlobal(args[0].module(),
                       (args[0].name() + "." + *attribute).str());
}

llvm::Expected<std::shared_ptr<Value>>
megatron::reader::callGlobal(const Value &callable, ValuePtr args) {
  std::optional<Call> call = callOf(callable);
  if (!call)
    return llvm::createStringError("cannot call " + callable.describe());
  if (args->kind() != Kind::Tuple)
    return llvm::createStringError(callable.qualifiedName() +
                                   ": arguments are " + args->describe() +
                                   ", not a tuple");
  CallArgs callArgs(callable, args);
  switch (*call) {
  case Call::NotCallable:
    return callArgs.error("is not callable here");
  case Call::Instance:
    return Value::object(callable.module().str(), callable.name().str(),
                         std::move(args));
  case Call::OrderedDict:
    return makeOrderedDict(callArgs);
  case Call::Set:
    return makeSet(callArgs);
  case Call::Bytes:
    return makeBytes(callArgs);
  case Call::Size:
    if (llvm::Error err = callArgs.expectCount(1, 1))
      return std::move(err);
    if (callArgs[0].kind() != Kind::Tuple && callArgs[0].kind() != Kind::List)
      return callArgs.error("expects a tuple, got " + callArgs[0].describe());
    return Value::sequence(Kind::Tuple, callArgs[0].elements().vec());
  case Call::RebuildTensor:
    return rebuildTensor(callArgs);
  case Call::RebuildParameter:
    return rebuildParameter(callArgs);
  case Call::RebuildFromType:
    return rebuildFromType(callArgs);
  case Call::Reconstructor:
    return reconstruct(callArgs);
  case Call::GetAttr:
    return getAttr(callArgs);
  }
  return callArgs.error("unhandled");
}
