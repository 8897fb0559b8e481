//===- Value.h - the object tree a restricted unpickler builds -*- C++ -*-===//
//
// What a torch checkpoint's pickle describes, as data: Python scalars and
// containers, references to allowed globals (torch.float16), opaque
// instances of allowed classes (argparse.Namespace, numpy arrays), storages
// and tensors. Nothing here is ever executed.
//
// Values are immutable once the unpickler hands them out. While it builds
// them, a container stops accepting changes as soon as it is placed inside
// another value; that rules out reference cycles and makes every value's
// nesting depth exact, so depth can be capped and all traversals (including
// destruction) recurse at most kMaxValueDepth levels.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_VALUE_H
#define MEGATRON_FRONTENDS_READER_VALUE_H

#include "frontends/reader/Tensor.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace megatron::reader {

class Value;
using ValuePtr = std::shared_ptr<const Value>;

/// Deepest nesting of containers a pickle may build.
constexpr unsigned kMaxValueDepth = 1000;

class Value {
public:
  enum class Kind {
    None,
    Bool,
    Int,
    BigInt, ///< an int beyond 64 bits, kept as decimal digits
    Float,
    String,
    Bytes,
    List,
    Tuple,
    Set,
    Dict,   ///< dict or OrderedDict; insertion ordered, keys of any kind
    Global, ///< a reference to an allowed global, e.g. torch.float16
    Object, ///< an instance of an allowed class: class name, args, state
    Storage,
    Tensor,
  };
  using DictItem = std::pair<ValuePtr, ValuePtr>;

  Kind kind() const { return kind_; }
  bool isNone() const { return kind_ == Kind::None; }
  bool isDict() const { return kind_ == Kind::Dict; }
  bool isTensor() const { return kind_ == Kind::Tensor; }
  bool isObject() const { return kind_ == Kind::Object; }
  /// Nesting depth: 0 for scalars, 1 + the deepest child for containers.
  unsigned depth() const { return depth_; }

  // Scalars: nullopt when the value is of another kind.
  std::optional<bool> asBool() const;
  std::optional<int64_t> asInt() const;
  /// A Float, or an Int converted (Python code often writes 1 for 1.0).
  std::optional<double> asFloat() const;
  std::optional<llvm::StringRef> asString() const;
  std::optional<llvm::StringRef> asBytes() const;
  /// The decimal digits of a BigInt.
  std::optional<llvm::StringRef> asBigInt() const;
  /// The dtype a `torch.<dtype>` global names (e.g. args.params_dtype).
  std::optional<DType> asTorchDType() const;
  const TensorRef *asTensor() const;
  std::shared_ptr<Storage> asStorage() const;

  /// Elements of a List, Tuple or Set; empty for other kinds.
  llvm::ArrayRef<ValuePtr> elements() const;
  /// Items of a Dict in insertion order; empty for other kinds.
  llvm::ArrayRef<DictItem> dictItems() const;
  /// The value under a str (or int) key of a Dict; null when absent or when
  /// this is not a Dict.
  const Value *dictGet(llvm::StringRef key) const;
  const Value *dictGet(int64_t key) const;

  /// Global: the referenced name; Object: its class. "" for other kinds.
  llvm::StringRef module() const;
  llvm::StringRef name() const;
  /// "module.name".
  std::string qualifiedName() const;
  /// Object: the constructor arguments (a Tuple). Null for other kinds.
  const Value *objectArgs() const;
  /// What BUILD set: an Object's state (argparse.Namespace: a Dict of its
  /// attributes) or a Dict's instance attributes (an OrderedDict state dict's
  /// `_metadata`). Null when none.
  const Value *state() const;
  /// An attribute held in the state Dict (args.hidden_size); null if absent.
  const Value *attr(llvm::StringRef name) const;

  /// A short description for error messages: "int 3", "str 'abc'",
  /// "dict[4]", "argparse.Namespace object", "f16[2, 3] in storage '0'".
  std::string describe() const;

  //===--------------------------------------------------------------------===//
  // Construction, for the unpickler. The mutators need a non-const Value,
  // which only the unpickler holds; everyone else sees ValuePtr.
  //===--------------------------------------------------------------------===//
  static std::shared_ptr<Value> none();
  static std::shared_ptr<Value> boolean(bool value);
  static std::shared_ptr<Value> integer(int64_t value);
  static std::shared_ptr<Value> bigInteger(std::string digits);
  static std::shared_ptr<Value> floating(double value);
  static std::shared_ptr<Value> string(std::string text);
  static std::shared_ptr<Value> bytes(std::string data);
  /// An empty List, Set or Dict.
  static std::shared_ptr<Value> empty(Kind kind);
  /// A List, Tuple or Set of `elements`.
  static llvm::Expected<std::shared_ptr<Value>>
  sequence(Kind kind, std::vector<ValuePtr> elements);
  static std::shared_ptr<Value> global(std::string module, std::string name);
  /// An instance of class module.name built from `args` (a Tuple).
  static llvm::Expected<std::shared_ptr<Value>>
  object(std::string module, std::string name, ValuePtr args);
  static std::shared_ptr<Value> storage(std::shared_ptr<Storage> storage);
  static std::shared_ptr<Value> tensor(TensorRef tensor);

  /// List/Set: adds an element.
  llvm::Error append(ValuePtr element);
  /// Dict: sets key to value (replacing an equal str/int key, as Python
  /// does).
  llvm::Error setItem(ValuePtr key, ValuePtr value);
  /// Object/Dict: records BUILD's state.
  llvm::Error setState(ValuePtr state);

private:
  struct Named {
    std::string module, name;
    ValuePtr args, state;
  };
  struct DictData {
    std::vector<DictItem> items;
    /// Positions of str/int keys, so lookups and replacement are O(1).
    std::unordered_map<std::string, size_t> index;
    ValuePtr state;
  };
  using Payload = std::variant<std::monostate, bool, int64_t, double,
                               std::string, std::vector<ValuePtr>, DictData,
                               Named, std::shared_ptr<Storage>, TensorRef>;

  Value(Kind kind, Payload payload)
      : kind_(kind), payload_(std::move(payload)) {}
  static std::shared_ptr<Value> make(Kind kind, Payload payload);

  /// Admits `child` into this value: refuses changes to a value that is
  /// already inside another one, self-insertion, and excessive depth.
  llvm::Error adopt(const ValuePtr &child);
  llvm::Error checkMutable(llvm::StringRef what) const;

  Kind kind_;
  unsigned depth_ = 0;
  /// Set once the value is placed inside another; it is frozen from then on.
  mutable bool adopted_ = false;
  Payload payload_;
};

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_VALUE_H
