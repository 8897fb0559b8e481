//===- CommandLine.h - parsing the runtime tools' arguments ----*- C++ -*-===//
//
// The runtime tools link neither LLVM nor MLIR, so their arguments are parsed
// here by hand. Kept apart from the mains so the fuzz target
// (test/fuzz/fuzz_cli_ids.cpp) exercises exactly what the tools run.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_TOOLS_SUPPORT_COMMANDLINE_H
#define MEGATRON_TOOLS_SUPPORT_COMMANDLINE_H

#include "megatron/runtime/Session.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace megatron::tools {

/// A bad argument; the message names the flag and the offending text.
struct CommandLineError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// `message` fit for one line of a terminal: control characters, and the
/// UTF-8 of C1 controls and of U+2028/U+2029 (line breaks to some readers),
/// as \xNN escapes. Error messages quote names read from files, which a
/// damaged file may fill with anything.
std::string oneLine(const std::string &message);

/// `s` without leading and trailing spaces, tabs and line ends.
std::string trim(const std::string &s);

/// `s` cut at every `sep`; "a,,b" has an empty middle part.
std::vector<std::string> split(const std::string &s, char sep);

/// A base-10 integer that fills all of `text` (surrounding blanks aside).
/// `where` says which part of the flag's value it is ("row 2, value 3").
int64_t parseInteger(const std::string &flag, const std::string &text,
                     const std::string &where = "");

/// Ids as the tools take them: "1,2;3,4" is [2, 2] (rows, seq) and
/// "1,2|3,4;5,6|7,8" is [2, 2, 2] (items, choices, seq). Every row must have
/// the same length: padding is the caller's, marked by the attention mask,
/// so no value is ever invented here.
runtime::IdTensor parseIdBatch(const std::string &flag, const std::string &text);

} // namespace megatron::tools

#endif // MEGATRON_TOOLS_SUPPORT_COMMANDLINE_H
