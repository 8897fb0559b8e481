//===- TestSupport.h - helpers shared by the reader unit tests --*- C++ -*-===//

#ifndef MEGATRON_TEST_UNIT_READER_TESTSUPPORT_H
#define MEGATRON_TEST_UNIT_READER_TESTSUPPORT_H

#include "frontends/reader/ByteSource.h"
#include "frontends/reader/Pickle.h"
#include "frontends/reader/Tensor.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace reader_test {

/// Where make_fixtures.py wrote the torch-made inputs (set by CMake).
inline std::string fixture(llvm::StringRef name) {
  llvm::SmallString<256> path(READER_FIXTURES_DIR);
  llvm::sys::path::append(path, name);
  return std::string(path);
}

/// "..."_b keeps embedded NUL bytes, which pickles are full of.
inline std::string operator""_b(const char *bytes, size_t length) {
  return std::string(bytes, length);
}

inline std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  return data.str();
}

inline void writeFile(const std::string &path, llvm::StringRef data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), data.size());
}

/// The message of a failed Expected/Error, or "" on success.
inline std::string errorMessage(llvm::Error err) {
  return err ? llvm::toString(std::move(err)) : std::string();
}
template <typename T> std::string errorMessage(llvm::Expected<T> &&value) {
  return errorMessage(value.takeError());
}

/// Expects `expr` (an Error or Expected) to fail with a message containing
/// `needle`.
#define EXPECT_ERROR(expr, needle)                                             \
  do {                                                                         \
    std::string message_ = ::reader_test::errorMessage(expr);                  \
    EXPECT_FALSE(message_.empty()) << "expected an error";                     \
    EXPECT_NE(message_.find(needle), std::string::npos)                        \
        << "message: " << message_;                                            \
  } while (0)

/// Unwraps an Expected, failing the test (fatally) on error.
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                        \
  auto lhs##OrError_ = (expr);                                                 \
  ASSERT_TRUE(static_cast<bool>(lhs##OrError_))                                \
      << llvm::toString(lhs##OrError_.takeError());                            \
  auto lhs = std::move(*lhs##OrError_)

/// Unpickles bytes held in memory.
inline llvm::Expected<megatron::reader::ValuePtr> loads(llvm::StringRef bytes) {
  auto source = megatron::reader::memorySource(bytes, "test.pkl");
  auto result = megatron::reader::unpickle(*source);
  if (!result)
    return result.takeError();
  return result->value;
}

/// A fresh directory for the files a test writes, removed afterwards.
class TempDir {
public:
  TempDir() {
    llvm::SmallString<128> dir;
    std::error_code ec =
        llvm::sys::fs::createUniqueDirectory("reader-test", dir);
    EXPECT_FALSE(ec) << ec.message();
    path_ = std::string(dir);
  }
  ~TempDir() { llvm::sys::fs::remove_directories(path_); }
  const std::string &path() const { return path_; }

private:
  std::string path_;
};

/// The bytes `tensor` reads back as.
inline std::string readTensor(const megatron::reader::TensorRef &tensor) {
  std::string data(tensor.nbytes(), '\0');
  llvm::Error err = tensor.read(data.data());
  EXPECT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));
  return data;
}

/// Expected tensors of one fixture, from manifest.json.
inline nlohmann::json manifest(llvm::StringRef fixtureName) {
  static const nlohmann::json all =
      nlohmann::json::parse(readFile(fixture("manifest.json")));
  return all.at(fixtureName.str());
}

/// Checks dtype, shape and exact bytes of `tensor` against the manifest.
inline void expectMatches(const megatron::reader::TensorRef &tensor,
                          const nlohmann::json &expected,
                          const std::string &name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(megatron::reader::dtypeName(tensor.dtype).str(),
            expected.at("dtype").get<std::string>());
  EXPECT_EQ(tensor.shape, expected.at("shape").get<std::vector<int64_t>>());
  EXPECT_EQ(readTensor(tensor),
            readFile(fixture(expected.at("bytes").get<std::string>())));
  if (expected.contains("values")) {
    std::string data = readTensor(tensor);
    std::vector<double> values = expected.at("values");
    ASSERT_EQ(data.size(), values.size() * sizeof(float));
    for (size_t i = 0; i < values.size(); ++i) {
      float value;
      std::memcpy(&value, data.data() + i * sizeof(float), sizeof value);
      EXPECT_EQ(static_cast<double>(value), values[i]) << "element " << i;
    }
  }
}

} // namespace reader_test

#endif // MEGATRON_TEST_UNIT_READER_TESTSUPPORT_H
