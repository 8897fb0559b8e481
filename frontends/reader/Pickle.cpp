//===- Pickle.cpp - a restricted, non-executing unpickler -----------------===//

#include "frontends/reader/Pickle.h"

#include "frontends/reader/PickleGlobals.h"

#include "llvm/ADT/APInt.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/ConvertUTF.h"
#include "llvm/Support/FormatVariadic.h"

#include <cstdlib>
#include <cstring>
#include <unordered_map>

using namespace megatron::reader;
using llvm::createStringError;
using llvm::formatv;
using Kind = Value::Kind;
using MutableValue = std::shared_ptr<Value>;

// Bounds on what one pickle may build. They are far above what a checkpoint
// needs (a 345M model's data.pkl holds a few thousand values) and keep a
// hostile pickle from exhausting memory.
constexpr size_t kMaxStack = 1 << 20;
constexpr size_t kMaxMemo = 1 << 24;
constexpr uint64_t kMaxValues = 1 << 24;
/// Longest str/bytes object (inline tensor data never lives in the pickle).
constexpr uint64_t kMaxBytesLength = 1ull << 30;
/// Python's own limit on int <-> decimal conversion; avoids quadratic work.
constexpr size_t kMaxIntDigits = 4300;
constexpr uint64_t kMaxLongBytes = 2048;

// The opcodes of pickle protocols 0-5 (Python's Lib/pickle.py).
#define PICKLE_OPCODES(X)                                                      \
  X(MARK, '(')                                                                 \
  X(STOP, '.')                                                                 \
  X(POP, '0')                                                                  \
  X(POP_MARK, '1')                                                             \
  X(DUP, '2')                                                                  \
  X(FLOAT, 'F')                                                                \
  X(INT, 'I')                                                                  \
  X(BININT, 'J')                                                               \
  X(BININT1, 'K')                                                              \
  X(LONG, 'L')                                                                 \
  X(BININT2, 'M')                                                              \
  X(NONE, 'N')                                                                 \
  X(PERSID, 'P')                                                               \
  X(BINPERSID, 'Q')                                                            \
  X(REDUCE, 'R')                                                               \
  X(STRING, 'S')                                                               \
  X(BINSTRING, 'T')                                                            \
  X(SHORT_BINSTRING, 'U')                                                      \
  X(UNICODE, 'V')                                                              \
  X(BINUNICODE, 'X')                                                           \
  X(APPEND, 'a')                                                               \
  X(BUILD, 'b')                                                                \
  X(GLOBAL, 'c')                                                               \
  X(DICT, 'd')                                                                 \
  X(EMPTY_DICT, '}')                                                           \
  X(APPENDS, 'e')                                                              \
  X(GET, 'g')                                                                  \
  X(BINGET, 'h')                                                               \
  X(INST, 'i')                                                                 \
  X(LONG_BINGET, 'j')                                                          \
  X(LIST, 'l')                                                                 \
  X(EMPTY_LIST, ']')                                                           \
  X(OBJ, 'o')                                                                  \
  X(PUT, 'p')                                                                  \
  X(BINPUT, 'q')                                                               \
  X(LONG_BINPUT, 'r')                                                          \
  X(SETITEM, 's')                                                              \
  X(TUPLE, 't')                                                                \
  X(EMPTY_TUPLE, ')')                                                          \
  X(SETITEMS, 'u')                                                             \
  X(BINFLOAT, 'G')                                                             \
  X(PROTO, 0x80)                                                               \
  X(NEWOBJ, 0x81)                                                              \
  X(EXT1, 0x82)                                                                \
  X(EXT2, 0x83)                                                                \
  X(EXT4, 0x84)                                                                \
  X(TUPLE1, 0x85)                                                              \
  X(TUPLE2, 0x86)                                                              \
  X(TUPLE3, 0x87)                                                              \
  X(NEWTRUE, 0x88)                                                             \
  X(NEWFALSE, 0x89)                                                            \
  X(LONG1, 0x8a)                                                               \
  X(LONG4, 0x8b)                                                               \
  X(BINBYTES, 'B')                                                             \
  X(SHORT_BINBYTES, 'C')                                                       \
  X(SHORT_BINUNICODE, 0x8c)                                                    \
  X(BINUNICODE8, 0x8d)                                                         \
  X(BINBYTES8, 0x8e)                                                           \
  X(EMPTY_SET, 0x8f)                                                           \
  X(ADDITEMS, 0x90)                                                            \
  X(FROZENSET, 0x91)                                                           \
  X(NEWOBJ_EX, 0x92)                                                           \
  X(STACK_GLOBAL, 0x93)                                                        \
  X(MEMOIZE, 0x94)                                                             \
  X(FRAME, 0x95)                                                               \
  X(BYTEARRAY8, 0x96)                                                          \
  X(NEXT_BUFFER, 0x97)                                                         \
  X(READONLY_BUFFER, 0x98)

namespace {
enum Opcode : uint8_t {
#define X(name, code) OP_##name = code,
  PICKLE_OPCODES(X)
#undef X
};
} // namespace

static std::string opcodeName(uint8_t op) {
  switch (op) {
#define X(name, code)                                                          \
  case OP_##name:                                                              \
    return #name;
    PICKLE_OPCODES(X)
#undef X
  }
  return formatv("unknown opcode 0x{0:x-2}", op).str();
}

//===----------------------------------------------------------------------===//
// Input: buffered reading of a ByteSource
//===----------------------------------------------------------------------===//

namespace {
class Input {
public:
  Input(const ByteSource &source, uint64_t offset)
      : source_(source), position_(offset), bufferStart_(offset) {}

  const ByteSource &source() const { return source_; }
  uint64_t position() const { return position_; }
  uint64_t remaining() const {
    return position_ < source_.size() ? source_.size() - position_ : 0;
  }

  llvm::Error read(void *dst, uint64_t length) {
    if (length > remaining())
      return createStringError(
          formatv("truncated: needs {0} more bytes but the input "
                  "ends after {1}",
                  length, remaining()));
    auto *out = static_cast<uint8_t *>(dst);
    while (length > 0) {
      if (position_ == bufferStart_ + buffer_.size()) {
        if (length >= kBufferSize) { // large strings bypass the buffer
          if (llvm::Error err = source_.read(position_, length, out))
            return err;
          position_ += length;
          // The buffer now lies behind the position: empty it, so the next
          // read refills instead of copying from outside it.
          bufferStart_ = position_;
          buffer_.clear();
          return llvm::Error::success();
        }
        if (llvm::Error err = refill())
          return err;
      }
      uint64_t n =
          std::min<uint64_t>(length, bufferStart_ + buffer_.size() - position_);
      std::memcpy(out, buffer_.data() + (position_ - bufferStart_), n);
      out += n;
      position_ += n;
      length -= n;
    }
    return llvm::Error::success();
  }

  llvm::Expected<uint8_t> byte() {
    uint8_t value;
    if (llvm::Error err = read(&value, 1))
      return std::move(err);
    return value;
  }

  /// A little-endian unsigned integer of N bytes.
  template <unsigned N> llvm::Expected<uint64_t> unsignedLE() {
    uint8_t bytes[N];
    if (llvm::Error err = read(bytes, N))
      return std::move(err);
    uint64_t value = 0;
    for (unsigned i = 0; i < N; ++i)
      value |= static_cast<uint64_t>(bytes[i]) << (8 * i);
    return value;
  }

  /// `length` bytes, refusing lengths beyond the input before allocating.
  llvm::Expected<std::string> string(uint64_t length) {
    if (length > kMaxBytesLength)
      return createStringError(
          formatv("a length of {0} bytes is beyond the {1} allowed", length,
                  kMaxBytesLength));
    if (length > remaining())
      return createStringError(
          formatv("truncated: a length of {0} bytes exceeds the {1} "
                  "left in the input",
                  length, remaining()));
    std::string text(length, '\0');
    if (llvm::Error err = read(text.data(), length))
      return std::move(err);
    return text;
  }

  /// The bytes up to the next newline, which is consumed but not returned.
  llvm::Expected<std::string> line() {
    std::string text;
    while (true) {
      auto c = byte();
      if (!c)
        return createStringError(
            "truncated: the input ends inside a text argument");
      if (*c == '\n')
        return text;
      if (text.size() == kMaxBytesLength)
        return createStringError("a text argument is longer than allowed");
      text.push_back(static_cast<char>(*c));
    }
  }

private:
  static constexpr uint64_t kBufferSize = 64 * 1024;

  llvm::Error refill() {
    buffer_.resize(std::min<uint64_t>(kBufferSize, remaining()));
    bufferStart_ = position_;
    return source_.read(position_, buffer_.size(), buffer_.data());
  }

  const ByteSource &source_;
  uint64_t position_;
  std::vector<uint8_t> buffer_;
  uint64_t bufferStart_;
};
} // namespace

//===----------------------------------------------------------------------===//
// Decoding opcode arguments
//===----------------------------------------------------------------------===//

/// A decimal integer as protocol 0 writes it (INT, LONG).
static llvm::Expected<MutableValue> parseDecimal(llvm::StringRef text) {
  llvm::StringRef digits = text;
  digits.consume_front("-");
  if (digits.empty() || digits.size() > kMaxIntDigits ||
      !llvm::all_of(digits, llvm::isDigit))
    return createStringError("'" + text.take_front(40) + "' is not an integer");
  int64_t small;
  if (!text.getAsInteger(10, small))
    return Value::integer(small);
  // getBitsNeeded counts magnitude bits; one more keeps the sign.
  llvm::APInt big(llvm::APInt::getBitsNeeded(text, 10) + 1, text, 10);
  return Value::bigInteger(llvm::toString(big, 10, /*Signed=*/true));
}

/// LONG1/LONG4's little-endian two's complement bytes.
static MutableValue decodeLong(llvm::StringRef bytes) {
  std::vector<uint64_t> words((bytes.size() + 7) / 8, 0);
  for (size_t i = 0; i < bytes.size(); ++i)
    words[i / 8] |= static_cast<uint64_t>(bytes.bytes_begin()[i])
                    << (8 * (i % 8));
  if (bytes.empty())
    return Value::integer(0);
  llvm::APInt value(static_cast<unsigned>(bytes.size() * 8), words);
  if (std::optional<int64_t> small = value.trySExtValue())
    return Value::integer(*small);
  return Value::bigInteger(llvm::toString(value, 10, /*Signed=*/true));
}

static llvm::Expected<double> parseFloat(const std::string &text) {
  char *end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    return createStringError("'" + llvm::StringRef(text).take_front(40) +
                             "' is not a float");
  return value;
}

/// STRING's argument: a quoted Python 2 str literal with backslash escapes
/// (what codecs.escape_decode accepts).
static llvm::Expected<std::string> decodeQuoted(llvm::StringRef text) {
  if (text.size() < 2 || text.front() != text.back() ||
      (text.front() != '\'' && text.front() != '"'))
    return createStringError("the STRING argument must be quoted");
  text = text.drop_front().drop_back();
  // The one-letter escapes and the characters they stand for.
  static constexpr char kSimpleEscapes[][2] = {
      {'n', '\n'}, {'r', '\r'}, {'t', '\t'},  {'a', '\a'},  {'b', '\b'},
      {'f', '\f'}, {'v', '\v'}, {'\\', '\\'}, {'\'', '\''}, {'"', '"'}};
  std::string out;
  while (!text.empty()) {
    char c = text.front();
    text = text.drop_front();
    if (c != '\\' || text.empty()) {
      out.push_back(c);
      continue;
    }
    char e = text.front();
    auto simple = llvm::find_if(
        kSimpleEscapes, [&](const char(&pair)[2]) { return pair[0] == e; });
    unsigned code = 0;
    if (simple != std::end(kSimpleEscapes)) {
      out.push_back((*simple)[1]);
      text = text.drop_front();
    } else if (e == 'x') { // exactly two hex digits
      if (text.size() < 3 || text.substr(1, 2).getAsInteger(16, code))
        return createStringError("bad \\x escape in a STRING argument");
      out.push_back(static_cast<char>(code));
      text = text.drop_front(3);
    } else if (e >= '0' && e <= '7') { // one to three octal digits
      size_t n = std::min<size_t>(3, text.find_first_not_of("01234567"));
      text.take_front(n).getAsInteger(8, code);
      out.push_back(static_cast<char>(code & 0xFF));
      text = text.drop_front(n);
    } else { // an unknown escape stays as written
      out.push_back('\\');
    }
  }
  return out;
}

/// UNICODE's argument: raw-unicode-escape, i.e. Latin-1 text in which
/// \uXXXX and \UXXXXXXXX stand for code points. Returns UTF-8.
static llvm::Expected<std::string> decodeRawUnicode(llvm::StringRef text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned codePoint = static_cast<uint8_t>(text[i]);
    size_t digits = 0;
    if (text[i] == '\\' && i + 1 < text.size())
      digits = text[i + 1] == 'u' ? 4 : text[i + 1] == 'U' ? 8 : 0;
    if (digits) {
      if (i + 2 + digits > text.size() ||
          text.substr(i + 2, digits).getAsInteger(16, codePoint))
        return createStringError("bad \\u escape in a UNICODE argument");
      i += 1 + digits;
    }
    if (codePoint > 0x10FFFF || (codePoint >= 0xD800 && codePoint <= 0xDFFF))
      return createStringError(
          formatv("code point 0x{0:x} is not valid", codePoint));
    char utf8[UNI_MAX_UTF8_BYTES_PER_CODE_POINT];
    char *end = utf8;
    llvm::ConvertCodePointToUTF8(codePoint, end);
    out.append(utf8, end);
  }
  return out;
}

//===----------------------------------------------------------------------===//
// The machine
//===----------------------------------------------------------------------===//

namespace {
class Unpickler {
public:
  Unpickler(const ByteSource &source, uint64_t offset, PersistentLoader loader)
      : in_(source, offset), loader_(loader) {}

  llvm::Expected<Unpickled> run() {
    while (true) {
      opOffset_ = in_.position();
      auto op = in_.byte();
      if (!op) {
        llvm::consumeError(op.takeError());
        return createStringError(
            formatv("{0}: pickle ends at offset {1} before its STOP",
                    in_.source().describe(), opOffset_));
      }
      op_ = *op;
      if (op_ == OP_STOP) {
        auto result = pop();
        if (!result)
          return withContext(result.takeError());
        return Unpickled{std::move(*result), in_.position()};
      }
      if (llvm::Error err = step())
        return withContext(std::move(err));
    }
  }

private:
  llvm::Error withContext(llvm::Error err) const {
    return createStringError(
        formatv("{0}: pickle offset {1} ({2}): {3}", in_.source().describe(),
                opOffset_, opcodeName(op_), llvm::toString(std::move(err))));
  }

  llvm::Error step();

  // Stack. MARK starts a new frame; ops below a frame cannot reach into the
  // frame beneath it, as in Python's unpickler.
  size_t frameBase() const { return marks_.empty() ? 0 : marks_.back(); }

  /// Pushes a value made by the current opcode (`fresh`) or a shared one.
  llvm::Error push(MutableValue value, bool fresh = true) {
    if (stack_.size() >= kMaxStack)
      return createStringError(formatv("stack deeper than {0}", kMaxStack));
    if (fresh && ++valuesMade_ > kMaxValues)
      return createStringError(formatv("more than {0} values", kMaxValues));
    stack_.push_back(std::move(value));
    return llvm::Error::success();
  }
  llvm::Error push(llvm::Expected<MutableValue> value) {
    if (!value)
      return value.takeError();
    return push(std::move(*value));
  }
  llvm::Expected<MutableValue> pop() {
    if (stack_.size() <= frameBase())
      return createStringError("stack underflow");
    MutableValue value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }
  llvm::Expected<MutableValue> top() {
    if (stack_.size() <= frameBase())
      return createStringError("stack underflow");
    return stack_.back();
  }
  llvm::Expected<std::vector<ValuePtr>> popMark() {
    if (marks_.empty())
      return createStringError("no MARK to pop to");
    size_t base = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + base, stack_.end());
    stack_.resize(base);
    return items;
  }

  llvm::Error memoPut(uint64_t index) {
    auto value = top();
    if (!value)
      return value.takeError();
    if (memo_.size() >= kMaxMemo && !memo_.count(index))
      return createStringError(
          formatv("memo larger than {0} entries", kMaxMemo));
    memo_[index] = std::move(*value);
    return llvm::Error::success();
  }
  llvm::Error memoGet(uint64_t index) {
    auto found = memo_.find(index);
    if (found == memo_.end())
      return createStringError(formatv("memo index {0} is not set", index));
    return push(found->second, /*fresh=*/false);
  }
  llvm::Expected<uint64_t> textIndex() {
    auto text = in_.line();
    if (!text)
      return text.takeError();
    uint64_t index;
    if (llvm::StringRef(*text).getAsInteger(10, index))
      return createStringError("'" + llvm::StringRef(*text).take_front(40) +
                               "' is not a memo index");
    return index;
  }

  llvm::Error pushPersistent(const Value &pid) {
    if (!loader_)
      return createStringError("persistent id " + pid.describe() +
                               " but no persistent loader was given");
    auto storage = loader_(pid);
    if (!storage)
      return storage.takeError();
    if (!*storage)
      return createStringError("persistent id " + pid.describe() +
                               " names no storage");
    return push(Value::storage(std::move(*storage)));
  }

  llvm::Error pushGlobal(llvm::StringRef module, llvm::StringRef name) {
    return push(resolveGlobal(module, name));
  }

  /// REDUCE, NEWOBJ, NEWOBJ_EX: what calling the callable on args means.
  llvm::Error call(const MutableValue &callable, const MutableValue &args) {
    return push(callGlobal(*callable, args));
  }

  /// APPENDS/ADDITEMS onto the value below the mark.
  llvm::Error extendTop() {
    auto items = popMark();
    if (!items)
      return items.takeError();
    auto target = top();
    if (!target)
      return target.takeError();
    for (ValuePtr &item : *items)
      if (llvm::Error err = (*target)->append(std::move(item)))
        return err;
    return llvm::Error::success();
  }
  llvm::Error setItems(Value &dict, std::vector<ValuePtr> items) {
    if (items.size() % 2)
      return createStringError("odd number of items for a dict");
    for (size_t i = 0; i < items.size(); i += 2)
      if (llvm::Error err =
              dict.setItem(std::move(items[i]), std::move(items[i + 1])))
        return err;
    return llvm::Error::success();
  }
  llvm::Error tupleOf(size_t count) {
    if (stack_.size() < frameBase() + count)
      return createStringError("stack underflow");
    std::vector<ValuePtr> items(stack_.end() - count, stack_.end());
    stack_.resize(stack_.size() - count);
    return push(Value::sequence(Kind::Tuple, std::move(items)));
  }
  llvm::Error pushString(llvm::Expected<std::string> text, Kind kind) {
    if (!text)
      return text.takeError();
    return push(kind == Kind::Bytes ? Value::bytes(std::move(*text))
                                    : Value::string(std::move(*text)));
  }
  /// A string whose length is an N-byte little-endian prefix.
  template <unsigned N> llvm::Error pushCounted(Kind kind) {
    auto length = in_.unsignedLE<N>();
    if (!length)
      return length.takeError();
    return pushString(in_.string(*length), kind);
  }

  Input in_;
  PersistentLoader loader_;
  std::vector<MutableValue> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, MutableValue> memo_;
  uint64_t valuesMade_ = 0;
  uint64_t opOffset_ = 0;
  uint8_t op_ = 0;
};
} // namespace

llvm::Error Unpickler::step() {
  switch (op_) {
  case OP_PROTO: {
    auto version = in_.byte();
    if (!version)
      return version.takeError();
    if (*version > 5)
      return createStringError(
          formatv("unsupported pickle protocol {0}", *version));
    return llvm::Error::success();
  }
  case OP_FRAME: { // framing only groups opcodes; the content is read as is
    auto length = in_.unsignedLE<8>();
    if (!length)
      return length.takeError();
    if (*length > in_.remaining())
      return createStringError(
          formatv("truncated: a frame of {0} bytes exceeds the {1} "
                  "left in the input",
                  *length, in_.remaining()));
    return llvm::Error::success();
  }
  case OP_MARK:
    if (marks_.size() >= kMaxStack)
      return createStringError(formatv("more than {0} MARKs", kMaxStack));
    marks_.push_back(stack_.size());
    return llvm::Error::success();
  case OP_POP:
    // An empty frame makes POP drop the MARK itself, as Python does.
    if (stack_.size() == frameBase() && !marks_.empty()) {
      marks_.pop_back();
      return llvm::Error::success();
    }
    return pop().takeError();
  case OP_POP_MARK:
    return popMark().takeError();
  case OP_DUP: {
    auto value = top();
    if (!value)
      return value.takeError();
    return push(std::move(*value), /*fresh=*/false);
  }

  // Scalars.
  case OP_NONE:
    return push(Value::none());
  case OP_NEWTRUE:
  case OP_NEWFALSE:
    return push(Value::boolean(op_ == OP_NEWTRUE));
  case OP_INT: {
    auto text = in_.line();
    if (!text)
      return text.takeError();
    if (*text == "00" || *text == "01") // protocol 0 booleans
      return push(Value::boolean(*text == "01"));
    return push(parseDecimal(*text));
  }
  case OP_LONG: {
    auto text = in_.line();
    if (!text)
      return text.takeError();
    llvm::StringRef digits(*text);
    digits.consume_back("L");
    return push(parseDecimal(digits));
  }
  case OP_BININT: {
    auto value = in_.unsignedLE<4>();
    if (!value)
      return value.takeError();
    return push(Value::integer(static_cast<int32_t>(*value)));
  }
  case OP_BININT1:
  case OP_BININT2: {
    auto value = op_ == OP_BININT1 ? in_.unsignedLE<1>() : in_.unsignedLE<2>();
    if (!value)
      return value.takeError();
    return push(Value::integer(static_cast<int64_t>(*value)));
  }
  case OP_LONG1:
  case OP_LONG4: {
    auto length = op_ == OP_LONG1 ? in_.unsignedLE<1>() : in_.unsignedLE<4>();
    if (!length)
      return length.takeError();
    if (*length > kMaxLongBytes)
      return createStringError(
          formatv("an integer of {0} bytes is beyond the {1} "
                  "allowed",
                  *length, kMaxLongBytes));
    auto bytes = in_.string(*length);
    if (!bytes)
      return bytes.takeError();
    return push(decodeLong(*bytes));
  }
  case OP_FLOAT: {
    auto text = in_.line();
    if (!text)
      return text.takeError();
    auto value = parseFloat(*text);
    if (!value)
      return value.takeError();
    return push(Value::floating(*value));
  }
  case OP_BINFLOAT: {
    uint8_t bytes[8];
    if (llvm::Error err = in_.read(bytes, 8))
      return err;
    uint64_t bits = 0;
    for (uint8_t b : bytes) // big-endian
      bits = (bits << 8) | b;
    double value;
    std::memcpy(&value, &bits, sizeof value);
    return push(Value::floating(value));
  }

  // Strings and bytes.
  case OP_STRING: {
    auto text = in_.line();
    if (!text)
      return text.takeError();
    return pushString(decodeQuoted(*text), Kind::String);
  }
  case OP_UNICODE: {
    auto text = in_.line();
    if (!text)
      return text.takeError();
    return pushString(decodeRawUnicode(*text), Kind::String);
  }
  case OP_BINSTRING: {
    auto length = in_.unsignedLE<4>();
    if (!length)
      return length.takeError();
    if (static_cast<int32_t>(*length) < 0)
      return createStringError("negative BINSTRING length");
    return pushString(in_.string(*length), Kind::String);
  }
  case OP_SHORT_BINSTRING:
  case OP_SHORT_BINUNICODE:
    return pushCounted<1>(Kind::String);
  case OP_BINUNICODE:
    return pushCounted<4>(Kind::String);
  case OP_BINUNICODE8:
    return pushCounted<8>(Kind::String);
  case OP_SHORT_BINBYTES:
    return pushCounted<1>(Kind::Bytes);
  case OP_BINBYTES:
    return pushCounted<4>(Kind::Bytes);
  case OP_BINBYTES8:
  case OP_BYTEARRAY8:
    return pushCounted<8>(Kind::Bytes);

  // Containers.
  case OP_EMPTY_LIST:
    return push(Value::empty(Kind::List));
  case OP_EMPTY_DICT:
    return push(Value::empty(Kind::Dict));
  case OP_EMPTY_SET:
    return push(Value::empty(Kind::Set));
  case OP_EMPTY_TUPLE:
    return tupleOf(0);
  case OP_TUPLE1:
  case OP_TUPLE2:
  case OP_TUPLE3:
    return tupleOf(op_ - OP_TUPLE1 + 1);
  case OP_TUPLE:
  case OP_LIST:
  case OP_FROZENSET: {
    auto items = popMark();
    if (!items)
      return items.takeError();
    Kind kind = op_ == OP_TUPLE  ? Kind::Tuple
                : op_ == OP_LIST ? Kind::List
                                 : Kind::Set;
    return push(Value::sequence(kind, std::move(*items)));
  }
  case OP_DICT: {
    auto items = popMark();
    if (!items)
      return items.takeError();
    MutableValue dict = Value::empty(Kind::Dict);
    if (llvm::Error err = setItems(*dict, std::move(*items)))
      return err;
    return push(std::move(dict));
  }
  case OP_APPEND: {
    auto item = pop();
    if (!item)
      return item.takeError();
    auto list = top();
    if (!list)
      return list.takeError();
    return (*list)->append(std::move(*item));
  }
  case OP_APPENDS:
  case OP_ADDITEMS:
    return extendTop();
  case OP_SETITEM: {
    auto value = pop();
    if (!value)
      return value.takeError();
    auto key = pop();
    if (!key)
      return key.takeError();
    auto dict = top();
    if (!dict)
      return dict.takeError();
    return (*dict)->setItem(std::move(*key), std::move(*value));
  }
  case OP_SETITEMS: {
    auto items = popMark();
    if (!items)
      return items.takeError();
    auto dict = top();
    if (!dict)
      return dict.takeError();
    return setItems(**dict, std::move(*items));
  }

  // Memo.
  case OP_PUT: {
    auto index = textIndex();
    if (!index)
      return index.takeError();
    return memoPut(*index);
  }
  case OP_BINPUT:
  case OP_LONG_BINPUT: {
    auto index = op_ == OP_BINPUT ? in_.unsignedLE<1>() : in_.unsignedLE<4>();
    if (!index)
      return index.takeError();
    return memoPut(*index);
  }
  case OP_MEMOIZE:
    return memoPut(memo_.size());
  case OP_GET: {
    auto index = textIndex();
    if (!index)
      return index.takeError();
    return memoGet(*index);
  }
  case OP_BINGET:
  case OP_LONG_BINGET: {
    auto index = op_ == OP_BINGET ? in_.unsignedLE<1>() : in_.unsignedLE<4>();
    if (!index)
      return index.takeError();
    return memoGet(*index);
  }

  // Globals, calls and persistent ids.
  case OP_GLOBAL: {
    auto module = in_.line();
    if (!module)
      return module.takeError();
    auto name = in_.line();
    if (!name)
      return name.takeError();
    return pushGlobal(*module, *name);
  }
  case OP_STACK_GLOBAL: {
    auto name = pop();
    if (!name)
      return name.takeError();
    auto module = pop();
    if (!module)
      return module.takeError();
    if (!(*module)->asString() || !(*name)->asString())
      return createStringError("expects two strings, got " +
                               (*module)->describe() + " and " +
                               (*name)->describe());
    return pushGlobal(*(*module)->asString(), *(*name)->asString());
  }
  case OP_REDUCE:
  case OP_NEWOBJ: {
    auto args = pop();
    if (!args)
      return args.takeError();
    auto callable = pop();
    if (!callable)
      return callable.takeError();
    return call(*callable, *args);
  }
  case OP_NEWOBJ_EX: {
    auto kwargs = pop();
    if (!kwargs)
      return kwargs.takeError();
    auto args = pop();
    if (!args)
      return args.takeError();
    auto cls = pop();
    if (!cls)
      return cls.takeError();
    if (!(*kwargs)->isDict() || !(*kwargs)->dictItems().empty())
      return createStringError("keyword arguments " + (*kwargs)->describe() +
                               " are not supported");
    return call(*cls, *args);
  }
  case OP_BUILD: {
    auto state = pop();
    if (!state)
      return state.takeError();
    auto target = top();
    if (!target)
      return target.takeError();
    return (*target)->setState(std::move(*state));
  }
  case OP_PERSID: {
    auto text = in_.line();
    if (!text)
      return text.takeError();
    return pushPersistent(*Value::string(std::move(*text)));
  }
  case OP_BINPERSID: {
    auto pid = pop();
    if (!pid)
      return pid.takeError();
    return pushPersistent(**pid);
  }

  // Opcodes that would import or call arbitrary code, or need out-of-band
  // data.
  case OP_INST:
  case OP_OBJ:
  case OP_EXT1:
  case OP_EXT2:
  case OP_EXT4:
  case OP_NEXT_BUFFER:
  case OP_READONLY_BUFFER:
    return createStringError("opcode refused");
  default:
    return createStringError("not a pickle opcode");
  }
}

llvm::Expected<Unpickled>
megatron::reader::unpickle(const ByteSource &source, uint64_t offset,
                           PersistentLoader loadPersistent) {
  return Unpickler(source, offset, loadPersistent).run();
}
