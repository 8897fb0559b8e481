//===- CommandLine.cpp - parsing the runtime tools' arguments -------------===//

#include "tools/support/CommandLine.h"

#include <cerrno>
#include <cstdlib>

namespace megatron::tools {

namespace {
[[noreturn]] void fail(const std::string &message) {
  throw CommandLineError(message);
}
} // namespace

std::string oneLine(const std::string &message) {
  std::string line;
  auto escape = [&](unsigned char c) {
    static const char kHex[] = "0123456789abcdef";
    line += "\\x";
    line += kHex[c >> 4];
    line += kHex[c & 15];
  };
  auto byte = [&](size_t i) { return i < message.size() ? (unsigned char)message[i] : 0; };
  for (size_t i = 0; i < message.size(); ++i) {
    unsigned char c = byte(i);
    size_t length = c < 0x20 || c == 0x7F                                 ? 1
                    : c == 0xC2 && byte(i + 1) >= 0x80 && byte(i + 1) <= 0x9F ? 2
                    : c == 0xE2 && byte(i + 1) == 0x80 &&
                            (byte(i + 2) == 0xA8 || byte(i + 2) == 0xA9)
                        ? 3
                        : 0;
    if (!length) {
      line += char(c);
      continue;
    }
    for (size_t k = 0; k < length; ++k)
      escape(byte(i + k));
    i += length - 1;
  }
  return line;
}

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos)
    return "";
  return s.substr(b, s.find_last_not_of(" \t\n\r") - b + 1);
}

std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (;;) {
    size_t end = s.find(sep, begin);
    parts.push_back(s.substr(begin, end - begin));
    if (end == std::string::npos)
      return parts;
    begin = end + 1;
  }
}

int64_t parseInteger(const std::string &flag, const std::string &text,
                     const std::string &where) {
  std::string t = trim(text);
  if (t.empty())
    fail(flag + (where.empty() ? "" : ": " + where) + " is empty");
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(t.c_str(), &end, 10);
  // Compared with the length, not with '\0': "12\0x" is not 12.
  if (end != t.c_str() + t.size())
    fail(flag + ": '" + t + "' " + (where.empty() ? "" : "(" + where + ") ") +
         "is not an integer");
  if (errno == ERANGE)
    fail(flag + ": '" + t + "' is out of range");
  return v;
}

runtime::IdTensor parseIdBatch(const std::string &flag, const std::string &text) {
  if (trim(text).empty())
    fail(flag + " is empty");
  bool choices = text.find('|') != std::string::npos;
  std::vector<std::string> items = split(text, ';');
  runtime::IdTensor out;
  size_t numChoices = 0, seq = 0;
  std::string firstRow;
  for (size_t i = 0; i < items.size(); ++i) {
    std::vector<std::string> rows =
        choices ? split(items[i], '|') : std::vector<std::string>{items[i]};
    if (i == 0)
      numChoices = rows.size();
    else if (rows.size() != numChoices)
      fail(flag + ": item " + std::to_string(i + 1) + " has " +
           std::to_string(rows.size()) + " choices but item 1 has " +
           std::to_string(numChoices));
    for (size_t c = 0; c < rows.size(); ++c) {
      std::string row = choices ? "item " + std::to_string(i + 1) + " choice " +
                                      std::to_string(c + 1)
                                : "row " + std::to_string(i + 1);
      if (trim(rows[c]).empty())
        fail(flag + ": " + row + " is empty");
      std::vector<std::string> values = split(rows[c], ',');
      for (size_t k = 0; k < values.size(); ++k)
        out.data.push_back(
            parseInteger(flag, values[k], row + ", value " + std::to_string(k + 1)));
      if (firstRow.empty()) {
        firstRow = row;
        seq = values.size();
      } else if (values.size() != seq) {
        fail(flag + ": " + row + " has " + std::to_string(values.size()) +
             " values but " + firstRow + " has " + std::to_string(seq) +
             "; every row needs the same length (pad short rows and mark the "
             "padding with 0 in --attention-mask)");
      }
    }
  }
  out.shape = {(int64_t)items.size()};
  if (choices)
    out.shape.push_back((int64_t)numChoices);
  out.shape.push_back((int64_t)seq);
  return out;
}

} // namespace megatron::tools
