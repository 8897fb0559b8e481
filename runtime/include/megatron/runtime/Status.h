//===- Status.h - errors as values, without LLVM --------------*- C++ -*-===//
//
// The runtime links neither LLVM nor MLIR, so it has its own small error
// type: a message naming the file, tensor or step, or success.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_STATUS_H
#define MEGATRON_RUNTIME_STATUS_H

#include <string>
#include <utility>

namespace megatron::runtime {

class [[nodiscard]] Status {
public:
  static Status success() { return Status(); }
  static Status error(std::string message) {
    Status s;
    s.failed_ = true;
    s.message_ = std::move(message);
    return s;
  }

  bool ok() const { return !failed_; }
  explicit operator bool() const { return failed_; } ///< true on error
  const std::string &message() const { return message_; }

private:
  bool failed_ = false;
  std::string message_;
};

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_STATUS_H
