//===- CommandLineTest.cpp - the runtime tools' id syntax -----------------===//

#include "tools/support/CommandLine.h"

#include "gtest/gtest.h"

using namespace megatron::tools;

namespace {

std::string errorOf(const std::string &text) {
  try {
    parseIdBatch("--input-ids", text);
  } catch (const CommandLineError &e) {
    return e.what();
  }
  return "";
}

TEST(CommandLine, RowsAndChoicesGiveTheirShapes) {
  megatron::runtime::IdTensor rows = parseIdBatch("--input-ids", "101, 7,102;1,2,3");
  EXPECT_EQ(rows.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(rows.data, (std::vector<int64_t>{101, 7, 102, 1, 2, 3}));
  megatron::runtime::IdTensor choices = parseIdBatch("--input-ids", "1,2|3,4;5,6|7,8");
  EXPECT_EQ(choices.shape, (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(choices.data.back(), 8);
}

TEST(CommandLine, BadIdsNameWhereTheyAre) {
  EXPECT_EQ(errorOf(" "), "--input-ids is empty");
  EXPECT_EQ(errorOf("1,2;3"), "--input-ids: row 2 has 1 values but row 1 has 2; every row "
                              "needs the same length (pad short rows and mark the padding "
                              "with 0 in --attention-mask)");
  EXPECT_EQ(errorOf("1,x"), "--input-ids: 'x' (row 1, value 2) is not an integer");
  EXPECT_EQ(errorOf("1,,2"), "--input-ids: row 1, value 2 is empty");
  EXPECT_EQ(errorOf("1|2;3"), "--input-ids: item 2 has 1 choices but item 1 has 2");
  EXPECT_EQ(errorOf("99999999999999999999"), "--input-ids: '99999999999999999999' is out of range");
  // Only callers other than argv can pass a NUL; it must not end the number.
  EXPECT_THROW(parseIdBatch("--input-ids", std::string("12\0x", 4)), CommandLineError);
}

// Names from a damaged file may hold line breaks of any kind; an error
// stays one line and keeps the rest of the text (UTF-8 included).
TEST(CommandLine, OneLineEscapesLineBreaks) {
  EXPECT_EQ(oneLine("entry 'a\nb\rc\x0b\x1d\x7f'"), "entry 'a\\x0ab\\x0dc\\x0b\\x1d\\x7f'");
  EXPECT_EQ(oneLine("next\xc2\x85line\xe2\x80\xa8sep"), "next\\xc2\\x85line\\xe2\\x80\\xa8sep");
  EXPECT_EQ(oneLine("caf\xc3\xa9 \xe2\x82\xac \xc2\xa0"), "caf\xc3\xa9 \xe2\x82\xac \xc2\xa0");
  EXPECT_EQ(oneLine(std::string("nul\0!", 5)), "nul\\x00!");
  EXPECT_EQ(oneLine("cut \xc2"), "cut \xc2");
}

} // namespace
