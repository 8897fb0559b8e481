//===- PickleTest.cpp - the restricted unpickler --------------------------===//
//
// Hand-assembled pickles for each opcode family and for hostile input, plus
// one object pickled by Python with every protocol.
//
//===----------------------------------------------------------------------===//

#include "TestSupport.h"

#include "frontends/reader/Pickle.h"

#include <random>

using namespace megatron::reader;
using reader_test::loads;
using reader_test::operator""_b;
using Kind = Value::Kind;

namespace {

std::string bytesOf(std::initializer_list<uint8_t> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

TEST(Pickle, Protocol0TextOpcodes) {
  // INT (and its bool spellings), LONG, FLOAT, STRING with escapes, UNICODE
  // with raw-unicode-escape, NONE, all inside MARK ... TUPLE.
  ASSERT_OK_AND_ASSIGN(value, loads("(I1\nI-5\nI01\nI00\n"
                                    "L123456789012345678901234567890L\nL7L\n"
                                    "F-1.5\nFinf\n"
                                    "S'a\\x41\\n\\'b\\101'\nS\"q\"\n"
                                    "Vh\xe9\\u20ac\nN"
                                    "t."_b));
  ASSERT_EQ(value->kind(), Kind::Tuple);
  llvm::ArrayRef<ValuePtr> items = value->elements();
  ASSERT_EQ(items.size(), 12u);
  EXPECT_EQ(items[0]->asInt(), 1);
  EXPECT_EQ(items[1]->asInt(), -5);
  EXPECT_EQ(items[2]->asBool(), true);
  EXPECT_EQ(items[3]->asBool(), false);
  EXPECT_EQ(items[4]->asBigInt(),
            llvm::StringRef("123456789012345678901234567890"));
  EXPECT_EQ(items[5]->asInt(), 7);
  EXPECT_EQ(items[6]->asFloat(), -1.5);
  EXPECT_EQ(items[7]->asFloat(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(items[8]->asString(), llvm::StringRef("aA\n'bA"));
  EXPECT_EQ(items[9]->asString(), llvm::StringRef("q"));
  EXPECT_EQ(items[10]->asString(), llvm::StringRef("h\xc3\xa9\xe2\x82\xac"));
  EXPECT_TRUE(items[11]->isNone());
}

TEST(Pickle, Protocol0ContainersAndMemo) {
  // A tuple of: the list [1, 2] (memo 0), a dict mapping 'k' to that list,
  // and the list again by GET.
  ASSERT_OK_AND_ASSIGN(value,
                       loads("((lp0\nI1\naI2\na(dp1\nS'k'\ng0\nsg0\nt."_b));
  llvm::ArrayRef<ValuePtr> items = value->elements();
  ASSERT_EQ(items.size(), 3u);
  ASSERT_EQ(items[0]->kind(), Kind::List);
  EXPECT_EQ(items[0]->elements().size(), 2u);
  ASSERT_TRUE(items[1]->isDict());
  EXPECT_EQ(items[1]->dictGet("k"), items[0].get());
  EXPECT_EQ(items[2].get(), items[0].get());
}

TEST(Pickle, BinaryIntegersAndFloats) {
  std::string pickle =
      "\x80\x02("
      "J\xff\xff\xff\xff"
      "K\x05"
      "M\x00\x01"_b +
      bytesOf({0x8a, 0x01, 0xff}) + bytesOf({0x8a, 0x00}) +
      // LONG1 of torch's legacy magic number.
      bytesOf({0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50,
               0x19}) +
      // LONG4 of 9 bytes whose value fits 64 bits.
      bytesOf({0x8b, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0xff}) +
      "G\x3f\xf8\0\0\0\0\0\0"
      "\x88\x89Nt."_b;
  ASSERT_OK_AND_ASSIGN(value, loads(pickle));
  llvm::ArrayRef<ValuePtr> items = value->elements();
  ASSERT_EQ(items.size(), 11u);
  EXPECT_EQ(items[0]->asInt(), -1);
  EXPECT_EQ(items[1]->asInt(), 5);
  EXPECT_EQ(items[2]->asInt(), 256);
  EXPECT_EQ(items[3]->asInt(), -1);
  EXPECT_EQ(items[4]->asInt(), 0);
  EXPECT_EQ(items[5]->asBigInt(), llvm::StringRef("119547037146038801333356"));
  EXPECT_EQ(items[6]->asInt(), INT64_MIN);
  EXPECT_EQ(items[7]->asFloat(), 1.5);
  EXPECT_EQ(items[8]->asBool(), true);
  EXPECT_EQ(items[9]->asBool(), false);
  EXPECT_TRUE(items[10]->isNone());
}

TEST(Pickle, BinaryStringsAndBytes) {
  std::string pickle = "\x80\x04("
                       "U\x03"
                       "abc"
                       "T\x03\0\0\0"
                       "def"
                       "X\x02\0\0\0"
                       "hi"
                       "\x8c\x02"
                       "yo"
                       "\x8d\x02\0\0\0\0\0\0\0"
                       "ok"
                       "C\x02\0\xff"
                       "B\x01\0\0\0"
                       "z"
                       "\x8e\x01\0\0\0\0\0\0\0"
                       "y"
                       "\x96\x01\0\0\0\0\0\0\0"
                       "x"
                       "t."_b;
  ASSERT_OK_AND_ASSIGN(value, loads(pickle));
  llvm::ArrayRef<ValuePtr> items = value->elements();
  ASSERT_EQ(items.size(), 9u);
  EXPECT_EQ(items[0]->asString(), llvm::StringRef("abc"));
  EXPECT_EQ(items[1]->asString(), llvm::StringRef("def"));
  EXPECT_EQ(items[2]->asString(), llvm::StringRef("hi"));
  EXPECT_EQ(items[3]->asString(), llvm::StringRef("yo"));
  EXPECT_EQ(items[4]->asString(), llvm::StringRef("ok"));
  EXPECT_EQ(items[5]->asBytes(), llvm::StringRef("\x00\xff", 2));
  EXPECT_EQ(items[6]->asBytes(), llvm::StringRef("z"));
  EXPECT_EQ(items[7]->asBytes(), llvm::StringRef("y"));
  EXPECT_EQ(items[8]->asBytes(), llvm::StringRef("x"));
  EXPECT_FALSE(items[0]->asBytes());
  EXPECT_FALSE(items[5]->asString());
}

TEST(Pickle, TuplesListsDictsSets) {
  std::string pickle = "\x80\x02("
                       ")"                   // ()
                       "K\x01\x85"           // (1,)
                       "K\x01K\x02\x86"      // (1, 2)
                       "K\x01K\x02K\x03\x87" // (1, 2, 3)
                       "](K\x01K\x02"
                       "e" // [1, 2]
                       "]K\x03"
                       "a" // [3]
                       "}(X\x01\0\0\0"
                       "aK\x01K\x02K\x03u" // {'a': 1, 2: 3}
                       "(K\x04K\x05l"      // [4, 5]
                       "(K\x06K\x07"
                       "d"              // {6: 7}
                       "\x8f(K\x08\x90" // {8}
                       "(K\x09\x91"     // frozenset({9})
                       "t."_b;
  ASSERT_OK_AND_ASSIGN(value, loads(pickle));
  llvm::ArrayRef<ValuePtr> items = value->elements();
  ASSERT_EQ(items.size(), 11u);
  EXPECT_EQ(items[0]->kind(), Kind::Tuple);
  EXPECT_EQ(items[0]->elements().size(), 0u);
  EXPECT_EQ(items[1]->elements().size(), 1u);
  EXPECT_EQ(items[2]->elements().size(), 2u);
  EXPECT_EQ(items[3]->elements()[2]->asInt(), 3);
  EXPECT_EQ(items[4]->kind(), Kind::List);
  EXPECT_EQ(items[4]->elements().size(), 2u);
  EXPECT_EQ(items[5]->elements()[0]->asInt(), 3);
  ASSERT_TRUE(items[6]->isDict());
  EXPECT_EQ(items[6]->dictGet("a")->asInt(), 1);
  EXPECT_EQ(items[6]->dictGet(2)->asInt(), 3);
  EXPECT_EQ(items[6]->dictGet("missing"), nullptr);
  EXPECT_EQ(items[7]->kind(), Kind::List);
  EXPECT_EQ(items[8]->dictGet(6)->asInt(), 7);
  EXPECT_EQ(items[9]->kind(), Kind::Set);
  EXPECT_EQ(items[9]->elements()[0]->asInt(), 8);
  EXPECT_EQ(items[10]->kind(), Kind::Set);
}

TEST(Pickle, DictKeepsInsertionOrderAndReplacesEqualKeys) {
  std::string pickle = "\x80\x02}(X\x01\x00\x00\x00"
                       "bK\x01X\x01\x00\x00\x00"
                       "aK\x02X\x01\x00\x00\x00"
                       "bK\x03u."_b;
  ASSERT_OK_AND_ASSIGN(value, loads(pickle));
  llvm::ArrayRef<Value::DictItem> items = value->dictItems();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].first->asString(), llvm::StringRef("b"));
  EXPECT_EQ(items[0].second->asInt(), 3);
  EXPECT_EQ(items[1].first->asString(), llvm::StringRef("a"));
}

TEST(Pickle, StackOpcodes) {
  ASSERT_OK_AND_ASSIGN(pop, loads("K\x01K\x02"
                                  "0."_b));
  EXPECT_EQ(pop->asInt(), 1);
  ASSERT_OK_AND_ASSIGN(popMark, loads("K\x07(K\x01K\x02"
                                      "1."_b));
  EXPECT_EQ(popMark->asInt(), 7);
  // POP in an empty frame drops the MARK, as Python's unpickler does.
  ASSERT_OK_AND_ASSIGN(popEmpty, loads("K\x07(0."_b));
  EXPECT_EQ(popEmpty->asInt(), 7);
  ASSERT_OK_AND_ASSIGN(dup, loads("]2\x86."_b));
  EXPECT_EQ(dup->elements()[0].get(), dup->elements()[1].get());
}

TEST(Pickle, Protocol4FramesMemoizeAndStackGlobal) {
  std::string body = "\x8c\x08"
                     "builtins\x94\x8c\x03"
                     "set\x94\x93\x94]\x94"
                     "K\x01"
                     "a\x85\x94R\x94."_b;
  std::string pickle = "\x80\x04\x95"_b + bytesOf({uint8_t(body.size())}) +
                       std::string(7, '\0') + body;
  ASSERT_OK_AND_ASSIGN(value, loads(pickle));
  ASSERT_EQ(value->kind(), Kind::Set);
  EXPECT_EQ(value->elements()[0]->asInt(), 1);
}

TEST(Pickle, NewObjExAndBuild) {
  ASSERT_OK_AND_ASSIGN(value, loads("\x80\x04\x8c\x08"
                                    "argparse\x8c\x09"
                                    "Namespace"
                                    "\x93)}\x92}X\x01\x00\x00\x00"
                                    "xK\x05sb."_b));
  ASSERT_TRUE(value->isObject());
  EXPECT_EQ(value->qualifiedName(), "argparse.Namespace");
  EXPECT_EQ(value->attr("x")->asInt(), 5);
  EXPECT_EQ(value->attr("y"), nullptr);
  EXPECT_ERROR(loads("\x80\x04\x8c\x08"
                     "argparse\x8c\x09"
                     "Namespace"
                     "\x93)}X\x01\x00\x00\x00"
                     "xK\x05s\x92."_b),
               "keyword arguments");
}

TEST(Pickle, OldStyleGlobalsAndAliases) {
  // Protocol 2 writes Python 2 module names; _codecs.encode makes bytes.
  ASSERT_OK_AND_ASSIGN(value, loads("\x80\x02"
                                    "c_codecs\nencode\nX\x02\x00\x00\x00"
                                    "\xc3\xbf"
                                    "X\x06\x00\x00\x00"
                                    "latin1\x86R."_b));
  EXPECT_EQ(value->asBytes(), llvm::StringRef("\xff"));
  ASSERT_OK_AND_ASSIGN(empty, loads("\x80\x02"
                                    "c__builtin__\nbytes\n)R."_b));
  EXPECT_EQ(empty->asBytes(), llvm::StringRef(""));
  ASSERT_OK_AND_ASSIGN(dtype, loads("\x80\x02"
                                    "ctorch\nbfloat16\n."_b));
  EXPECT_EQ(dtype->asTorchDType(), DType::BF16);
  EXPECT_EQ(dtype->describe(), "global torch.bfloat16");
}

TEST(Pickle, EnumMembers) {
  // Before Python 3.11 enum members pickle by value: cls(2).
  ASSERT_OK_AND_ASSIGN(byValue, loads("\x80\x02"
                                      "cmegatron.core.enums\nModelType\n"
                                      "K\x02\x85R."_b));
  EXPECT_EQ(byValue->qualifiedName(), "megatron.core.enums.ModelType");
  EXPECT_EQ(byValue->objectArgs()->elements()[0]->asInt(), 2);
  // Since then by name: getattr(cls, 'causal').
  ASSERT_OK_AND_ASSIGN(byName, loads("\x80\x02"
                                     "c__builtin__\ngetattr\n"
                                     "cmegatron.model.enums\nAttnMaskType\n"
                                     "X\x06\0\0\0"
                                     "causal\x86R."_b));
  EXPECT_EQ(byName->qualifiedName(),
            "megatron.model.enums.AttnMaskType.causal");
  // getattr reaches only what the allow-list has.
  EXPECT_ERROR(loads("\x80\x02"
                     "c__builtin__\ngetattr\n"
                     "cbuiltins\nobject\n"
                     "X\x0e\0\0\0"
                     "__subclasses__\x86R."_b),
               "refusing global 'builtins.object.__subclasses__'");
  EXPECT_ERROR(loads("\x80\x02"
                     "c__builtin__\ngetattr\n"
                     "K\x01"
                     "X\x01\0\0\0"
                     "x\x86R."_b),
               "only looks up names of globals");
  EXPECT_ERROR(loads("\x80\x02"
                     "cmegatron.model.utils\nhelper\n."_b),
               "refusing global 'megatron.model.utils.helper'");
}

TEST(Pickle, TensorSubclassesRebuildToTheirData) {
  // _rebuild_from_type_v2(_rebuild_tensor_v2, Parameter, args, state), as
  // torch >= 1.13 writes tensors carrying Python attributes.
  auto source = memorySource("\x80\x02"
                             "ctorch._tensor\n_rebuild_from_type_v2\n"
                             "(ctorch._utils\n_rebuild_tensor_v2\n"
                             "ctorch.nn.parameter\nParameter\n"
                             "(NQK\x01K\x02\x85K\x01\x85\x89)t"
                             "}X\x15\0\0\0"
                             "tensor_model_parallel\x88stR."_b,
                             "subclass.pkl");
  auto result = unpickle(
      *source, 0,
      [](const Value &) -> llvm::Expected<std::shared_ptr<Storage>> {
        return std::make_shared<Storage>(Storage{DType::F16, "s", 3, nullptr});
      });
  ASSERT_TRUE(static_cast<bool>(result)) << llvm::toString(result.takeError());
  const TensorRef *tensor = result->value->asTensor();
  ASSERT_NE(tensor, nullptr);
  EXPECT_EQ(tensor->storageOffset, 1);
  EXPECT_EQ(tensor->shape, (std::vector<int64_t>{2}));
  EXPECT_ERROR(loads("\x80\x02"
                     "ctorch._tensor\n_rebuild_from_type_v2\n"
                     "(ccollections\nOrderedDict\nctorch\nTensor\n)}tR."_b),
               "expects a tensor rebuild function");
}

TEST(Pickle, PersistentIdsGoToTheLoader) {
  auto source = memorySource("\x80\x02(X\x01\x00\x00\x00"
                             "kK\x04tQPtext\n\x86."_b,
                             "pid.pkl");
  std::vector<std::string> seen;
  auto result = unpickle(
      *source, 0,
      [&](const Value &pid) -> llvm::Expected<std::shared_ptr<Storage>> {
        seen.push_back(pid.describe());
        return std::make_shared<Storage>(
            Storage{DType::F32, "key", 4, nullptr});
      });
  ASSERT_TRUE(static_cast<bool>(result)) << llvm::toString(result.takeError());
  EXPECT_EQ(seen, (std::vector<std::string>{"tuple[2]", "str 'text'"}));
  EXPECT_EQ(result->value->elements()[0]->kind(), Kind::Storage);
  EXPECT_EQ(result->end, source->size());

  EXPECT_ERROR(loads("Ptext\n."_b), "no persistent loader");
  auto failing =
      unpickle(*source, 0,
               [](const Value &) -> llvm::Expected<std::shared_ptr<Storage>> {
                 return llvm::createStringError("no such storage");
               });
  EXPECT_ERROR(std::move(failing), "no such storage");
}

TEST(Pickle, ReadsAfterAStringLargerThanTheBuffer) {
  // A filler string ends exactly at the 64 KiB input buffer's end, so the
  // next, 100000-byte string is read around the buffer; the opcodes after it
  // must then come from the input, not from the stale buffer (a regression:
  // a bit-flipped legacy file crashed here).
  auto binunicode = [](const std::string &text) {
    std::string op = "X";
    for (int i = 0; i < 4; ++i)
      op.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
    return op + text;
  };
  std::string filler(65536 - 13, 'f'), big(100000, 'x');
  std::string pickle = "\x80\x02("_b + binunicode(filler) + binunicode(big) +
                       "K\x07K\x08t."_b;
  ASSERT_EQ(pickle.find(big), 65536u);
  ASSERT_OK_AND_ASSIGN(value, loads(pickle));
  llvm::ArrayRef<ValuePtr> items = value->elements();
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[1]->asString()->size(), big.size());
  EXPECT_EQ(items[2]->asInt(), 7);
  EXPECT_EQ(items[3]->asInt(), 8);
}

TEST(Pickle, SequentialPicklesReportTheirEnd) {
  auto source = memorySource("K\x01.K\x02."_b, "two.pkl");
  auto first = unpickle(*source);
  ASSERT_TRUE(static_cast<bool>(first)) << llvm::toString(first.takeError());
  EXPECT_EQ(first->end, 3u);
  auto second = unpickle(*source, first->end);
  ASSERT_TRUE(static_cast<bool>(second)) << llvm::toString(second.takeError());
  EXPECT_EQ(second->value->asInt(), 2);
}

//===----------------------------------------------------------------------===//
// Python-made pickles, every protocol
//===----------------------------------------------------------------------===//

class PythonPickle : public testing::TestWithParam<int> {};

TEST_P(PythonPickle, KitchenSink) {
  std::string path =
      reader_test::fixture("sink_p" + std::to_string(GetParam()) + ".pkl");
  ASSERT_OK_AND_ASSIGN(file, MappedFile::open(path));
  auto result = unpickle(*file);
  ASSERT_TRUE(static_cast<bool>(result)) << llvm::toString(result.takeError());
  const Value &sink = *result->value;
  ASSERT_TRUE(sink.isDict());
  auto get = [&](llvm::StringRef key) -> const Value & {
    const Value *value = sink.dictGet(key);
    EXPECT_NE(value, nullptr) << key.str();
    static const ValuePtr none = Value::none();
    return value ? *value : *none;
  };
  EXPECT_EQ(get("int").asInt(), 1);
  EXPECT_EQ(get("neg").asInt(), -300);
  EXPECT_EQ(get("i32").asInt(), 2147483647);
  EXPECT_EQ(get("i64").asInt(), INT64_MIN);
  EXPECT_EQ(get("big").asBigInt(), llvm::StringRef("1180591620717411303424"));
  EXPECT_EQ(get("negbig").asBigInt(),
            llvm::StringRef("-1180591620717411303424"));
  EXPECT_EQ(get("float").asFloat(), 1.5);
  EXPECT_EQ(get("inf").asFloat(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(get("str").asString(),
            llvm::StringRef("h\xc3\xa9llo\n\\ \xe2\x82\xac"));
  EXPECT_EQ(get("bytes").asBytes(), llvm::StringRef("\x00\xff\n", 3));
  EXPECT_EQ(get("empty_bytes").asBytes(), llvm::StringRef(""));
  EXPECT_EQ(get("bytearray").asBytes(), llvm::StringRef("ab"));
  ASSERT_EQ(get("list").elements().size(), 2u);
  EXPECT_EQ(get("list").elements()[1]->elements()[1]->asInt(), 3);
  for (int n = 0; n <= 4; ++n) {
    const Value &tuple = get("tuple" + std::to_string(n));
    EXPECT_EQ(tuple.kind(), Kind::Tuple);
    EXPECT_EQ(tuple.elements().size(), static_cast<size_t>(n));
  }
  EXPECT_EQ(get("set").kind(), Kind::Set);
  EXPECT_EQ(get("set").elements()[0]->asInt(), 7);
  EXPECT_EQ(get("frozenset").elements()[0]->asInt(), 8);
  EXPECT_TRUE(get("none").isNone());
  EXPECT_EQ(get("true").asBool(), true);
  EXPECT_EQ(get("false").asBool(), false);
  llvm::ArrayRef<ValuePtr> shared = get("shared").elements();
  ASSERT_EQ(shared.size(), 2u);
  EXPECT_EQ(shared[0].get(), shared[1].get());
  llvm::ArrayRef<Value::DictItem> ordered = get("od").dictItems();
  ASSERT_EQ(ordered.size(), 2u);
  EXPECT_EQ(ordered[0].first->asString(), llvm::StringRef("b"));
  EXPECT_EQ(ordered[1].second->asInt(), 2);
  const Value &ns = get("ns");
  EXPECT_EQ(ns.qualifiedName(), "argparse.Namespace");
  EXPECT_EQ(ns.attr("x")->asInt(), 1);
  EXPECT_EQ(ns.attr("dtype")->asTorchDType(), DType::BF16);
  EXPECT_EQ(get("int_keys").dictGet(2)->asString(), llvm::StringRef("two"));
  ASSERT_EQ(get("long_list").elements().size(), 1500u);
  EXPECT_EQ(get("long_list").elements()[1499]->asInt(), 1499);
  ASSERT_EQ(get("size").kind(), Kind::Tuple);
  EXPECT_EQ(get("size").elements()[1]->asInt(), 3);
}

INSTANTIATE_TEST_SUITE_P(AllProtocols, PythonPickle,
                         testing::Values(0, 1, 2, 3, 4, 5));

//===----------------------------------------------------------------------===//
// Hostile input
//===----------------------------------------------------------------------===//

TEST(PickleHostile, RefusesGlobalsOffTheAllowList) {
  EXPECT_ERROR(loads("cos\nsystem\n(S'ls'\ntR."_b),
               "refusing global 'os.system'");
  EXPECT_ERROR(loads("\x80\x02"
                     "cposix\nsystem\nX\x02\x00\x00\x00lsR."_b),
               "refusing global 'posix.system'");
  EXPECT_ERROR(loads("\x80\x02"
                     "c__builtin__\neval\n."_b),
               "refusing global '__builtin__.eval'");
  EXPECT_ERROR(loads("\x80\x04\x8c\x08"
                     "builtins\x8c\x04"
                     "eval\x93."_b),
               "refusing global 'builtins.eval'");
  EXPECT_ERROR(loads("\x80\x02"
                     "csubprocess\nPopen\n."_b),
               "refusing global 'subprocess.Popen'");
  EXPECT_ERROR(loads("\x80\x02"
                     "ctorch\nload\n."_b),
               "refusing global 'torch.load'");
  // The error names the offset and the opcode.
  EXPECT_ERROR(loads("\x80\x02"
                     "cposix\nsystem\n."_b),
               "test.pkl: pickle offset 2 (GLOBAL)");
}

TEST(PickleHostile, AllowedGlobalsAreNotCallableAtWill) {
  EXPECT_ERROR(loads("\x80\x02"
                     "ctorch\nFloatStorage\n)R."_b),
               "not callable");
  EXPECT_ERROR(loads("\x80\x02"
                     "ctorch._utils\n_rebuild_tensor_v2\n"
                     "(K\x01K\x02K\x03K\x04tR."_b),
               "expects a storage");
  EXPECT_ERROR(loads("\x80\x02K\x01)R."_b), "cannot call int 1");
  EXPECT_ERROR(loads("\x80\x02"
                     "ccollections\nOrderedDict\nK\x01R."_b),
               "not a tuple");
}

TEST(PickleHostile, RefusesCodeOpcodes) {
  EXPECT_ERROR(loads("(ios\nsystem\nS'ls'\n."_b), "(INST): opcode refused");
  EXPECT_ERROR(loads("\x80\x02(o."_b), "(OBJ): opcode refused");
  EXPECT_ERROR(loads("\x80\x02\x82\x01."_b), "(EXT1): opcode refused");
  EXPECT_ERROR(loads("\x80\x05\x97."_b), "(NEXT_BUFFER): opcode refused");
}

TEST(PickleHostile, UnknownOpcode) {
  EXPECT_ERROR(loads("\x80\x02\xff."_b), "offset 2 (unknown opcode 0xff)");
  EXPECT_ERROR(loads("\x80\x09N."_b), "unsupported pickle protocol 9");
}

TEST(PickleHostile, Truncated) {
  EXPECT_ERROR(loads("\x80\x02J\x01\x00"_b), "(BININT): truncated");
  EXPECT_ERROR(loads("\x80\x02K\x01"_b), "ends at offset 4 before its STOP");
  EXPECT_ERROR(loads(""_b), "ends at offset 0");
  EXPECT_ERROR(loads("I12"_b), "(INT): truncated");
  EXPECT_ERROR(loads("\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00N."_b),
               "frame of 256 bytes");
}

TEST(PickleHostile, LengthsBeyondTheInput) {
  EXPECT_ERROR(loads("\x80\x02X\x00\x00\x00\x10"
                     "abc."_b),
               "(BINUNICODE): truncated: a length of 268435456 bytes exceeds "
               "the 4 left");
  EXPECT_ERROR(loads("\x80\x02X\xff\xff\xff\x7f"
                     "abc."_b),
               "(BINUNICODE): a length of 2147483647 bytes is beyond");
  EXPECT_ERROR(loads("\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff"
                     "abc."_b),
               "(BINUNICODE8): a length of 18446744073709551615 bytes is "
               "beyond");
  EXPECT_ERROR(loads("\x80\x02T\xff\xff\xff\xff."_b),
               "negative BINSTRING length");
  EXPECT_ERROR(loads("\x80\x02\x8b\xff\xff\xff\x7f."_b), "(LONG4)");
}

TEST(PickleHostile, MemoAndStackMisuse) {
  EXPECT_ERROR(loads("\x80\x02h\x05."_b), "(BINGET): memo index 5 is not set");
  EXPECT_ERROR(loads("\x80\x02j\x00\x00\x00\x01."_b), "memo index 16777216");
  EXPECT_ERROR(loads("\x80\x02s."_b), "(SETITEM): stack underflow");
  EXPECT_ERROR(loads("\x80\x02}(K\x01s."_b), "(SETITEM): stack underflow");
  EXPECT_ERROR(loads("\x80\x02."_b), "(STOP): stack underflow");
  EXPECT_ERROR(loads("\x80\x02q\x00."_b), "(BINPUT): stack underflow");
  EXPECT_ERROR(loads("\x80\x02t."_b), "no MARK");
  EXPECT_ERROR(loads("\x80\x02K\x01\x86."_b), "(TUPLE2): stack underflow");
  EXPECT_ERROR(loads("\x80\x02}(K\x01u."_b), "odd number of items");
  EXPECT_ERROR(loads("\x80\x02K\x01K\x02"
                     "a."_b),
               "cannot append to int 1");
  EXPECT_ERROR(loads("\x80\x02)K\x01"
                     "b."_b),
               "cannot set the state of tuple");
}

TEST(PickleHostile, DeepNestingIsCappedWithoutRecursion) {
  constexpr int kDepth = 100000;
  std::string appends = "\x80\x02"_b + std::string(kDepth, ']') +
                        std::string(kDepth - 1, 'a') + ".";
  EXPECT_ERROR(loads(appends), "nest deeper than 1000 levels");
  std::string marks =
      "\x80\x02"_b + std::string(kDepth, '(') + std::string(kDepth, 'l') + ".";
  EXPECT_ERROR(loads(marks), "nest deeper than 1000 levels");
  // Exactly at the limit is fine.
  std::string deepest =
      "\x80\x02"_b + std::string(1000, ']') + std::string(999, 'a') + ".";
  ASSERT_OK_AND_ASSIGN(value, loads(deepest));
  EXPECT_EQ(value->depth(), 999u);
}

TEST(PickleHostile, RecursiveStructuresAreRefused) {
  // l = []; l.append(l)
  EXPECT_ERROR(loads("\x80\x02]q\x00h\x00"
                     "a."_b),
               "cannot contain itself");
  // a = []; b = [a]; a.append(b)
  EXPECT_ERROR(loads("\x80\x02]q\x00]q\x01h\x00"
                     "ah\x00h\x01"
                     "a."_b),
               "after it was placed inside another value");
  // An object whose state contains it.
  EXPECT_ERROR(loads("\x80\x02"
                     "cargparse\nNamespace\n)\x81q\x00}(X\x01\x00"
                     "\x00\x00"
                     "sh\x00ub."_b),
               "after it was placed inside another value");
}

TEST(PickleHostile, TensorArgumentsAreValidated) {
  auto source = memorySource("\x80\x02"
                             "ctorch._utils\n_rebuild_tensor_v2\n"
                             "(X\x01\x00\x00\x00"
                             "kQK\x00K\x03\x85K\xff\x85\x89)tR."_b,
                             "tensor.pkl");
  auto result =
      unpickle(*source, 0,
               [](const Value &) -> llvm::Expected<std::shared_ptr<Storage>> {
                 return std::make_shared<Storage>(
                     Storage{DType::F32, "archive/data/7", 2, nullptr});
               });
  EXPECT_ERROR(std::move(result), "needs 511 elements but the storage holds 2");
}

TEST(PickleHostile, CorruptedPicklesFailCleanly) {
  // Flip bytes of, or cut short, Python-made pickles of every protocol: each
  // result must be a value or an error, never a crash or a hang (this is
  // most telling under the sanitizers).
  std::mt19937 random(1234);
  for (int protocol = 0; protocol <= 5; ++protocol) {
    std::string original = reader_test::readFile(
        reader_test::fixture("sink_p" + std::to_string(protocol) + ".pkl"));
    ASSERT_FALSE(original.empty());
    for (int trial = 0; trial < 100; ++trial) {
      std::string bytes = original;
      if (trial % 4 == 0) {
        bytes.resize(random() % bytes.size());
      } else {
        for (int flips = 1 + random() % 3; flips > 0; --flips)
          bytes[random() % bytes.size()] = static_cast<char>(random());
      }
      llvm::consumeError(loads(bytes).takeError());
    }
  }
}

} // namespace
