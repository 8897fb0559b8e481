//===- ByteSourceTest.cpp - byte sources and zip archives -----------------===//

#include "TestSupport.h"

#include "frontends/reader/ByteSource.h"
#include "frontends/reader/ZipArchive.h"

#include <thread>

using namespace megatron::reader;
using reader_test::fixture;

namespace {

TEST(ByteSource, ReadsAreBoundsChecked) {
  auto bytes = memorySource(llvm::StringRef("0123456789"), "digits");
  char out[4] = {};
  ASSERT_FALSE(static_cast<bool>(bytes->read(6, 4, out)));
  EXPECT_EQ(std::string(out, 4), "6789");
  EXPECT_ERROR(
      bytes->read(8, 4, out),
      "digits: read of 4 bytes at offset 8 goes past its end (size 10)");
  EXPECT_ERROR(bytes->read(UINT64_MAX, 2, out), "goes past its end");
  EXPECT_FALSE(static_cast<bool>(bytes->read(10, 0, out)));
}

TEST(ByteSource, Slices) {
  std::shared_ptr<const ByteSource> bytes =
      memorySource(llvm::StringRef("0123456789"), "digits");
  ASSERT_OK_AND_ASSIGN(slice, sliceSource(bytes, 2, 5, "middle"));
  EXPECT_EQ(slice->size(), 5u);
  EXPECT_EQ(slice->describe(), "middle");
  ASSERT_OK_AND_ASSIGN(text, readAll(*slice, 100));
  EXPECT_EQ(text, "23456");
  char out[2];
  EXPECT_ERROR(slice->read(4, 2, out), "middle: read of 2 bytes at offset 4");
  EXPECT_ERROR(sliceSource(bytes, 8, 3, "tail"), "lie outside digits");
  EXPECT_ERROR(sliceSource(bytes, UINT64_MAX, 2, "wrap"), "lie outside");
  EXPECT_ERROR(readAll(*bytes, 4), "10 bytes is more than the 4 expected");
}

TEST(ByteSource, MappedFiles) {
  reader_test::TempDir temp;
  const std::string &dir = temp.path();
  reader_test::writeFile(dir + "/data", "hello");
  reader_test::writeFile(dir + "/empty", "");
  ASSERT_OK_AND_ASSIGN(file, MappedFile::open(dir + "/data"));
  EXPECT_EQ(file->size(), 5u);
  EXPECT_EQ(file->describe(), dir + "/data");
  ASSERT_OK_AND_ASSIGN(text, readAll(*file, 5));
  EXPECT_EQ(text, "hello");
  ASSERT_OK_AND_ASSIGN(empty, MappedFile::open(dir + "/empty"));
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_ERROR(MappedFile::open(dir + "/missing"),
               "cannot open " + dir + "/missing");
  EXPECT_ERROR(MappedFile::open(dir), "not a regular file");
}

TEST(ZipArchive, ListsAndReadsStoredEntriesInPlace) {
  ASSERT_OK_AND_ASSIGN(archive, ZipArchive::open(fixture("zoo_zip.pt")));
  EXPECT_TRUE(archive->contains("zoo_zip/data.pkl"));
  EXPECT_TRUE(archive->contains("zoo_zip/version"));
  EXPECT_FALSE(archive->contains("zoo_zip/nope"));
  EXPECT_EQ(archive->entryNames().front(), "zoo_zip/data.pkl");
  ASSERT_OK_AND_ASSIGN(version, archive->openEntry("zoo_zip/version"));
  EXPECT_EQ(version->describe(),
            "'zoo_zip/version' in " + fixture("zoo_zip.pt"));
  ASSERT_OK_AND_ASSIGN(text, readAll(*version, 16));
  EXPECT_EQ(text, "3\n");
  // Partial reads at an offset.
  ASSERT_OK_AND_ASSIGN(pickle, archive->openEntry("zoo_zip/data.pkl"));
  ASSERT_OK_AND_ASSIGN(whole, readAll(*pickle, 1 << 20));
  char middle[7];
  ASSERT_FALSE(static_cast<bool>(pickle->read(100, 7, middle)));
  EXPECT_EQ(std::string(middle, 7), whole.substr(100, 7));
  EXPECT_ERROR(pickle->read(whole.size() - 2, 7, middle), "goes past its end");
  EXPECT_ERROR(archive->openEntry("zoo_zip/nope"), "'zoo_zip/nope' in " +
                                                       fixture("zoo_zip.pt") +
                                                       ": no such entry");
}

TEST(ZipArchive, StoredEntriesReadConcurrently) {
  ASSERT_OK_AND_ASSIGN(archive, ZipArchive::open(fixture("zoo_zip.pt")));
  ASSERT_OK_AND_ASSIGN(pickle, archive->openEntry("zoo_zip/data.pkl"));
  ASSERT_OK_AND_ASSIGN(whole, readAll(*pickle, 1 << 20));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (uint64_t offset = t; offset + 16 <= whole.size(); offset += 13) {
        char out[16];
        if (llvm::Error err = pickle->read(offset, 16, out)) {
          llvm::consumeError(std::move(err));
          ++mismatches;
        } else if (std::string(out, 16) != whole.substr(offset, 16)) {
          ++mismatches;
        }
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(ZipArchive, DeflatedEntriesAreInflatedToATemporaryFile) {
  ASSERT_OK_AND_ASSIGN(deflated, ZipArchive::open(fixture("ngc_deflated.zip")));
  ASSERT_OK_AND_ASSIGN(stored, ZipArchive::open(fixture("ngc_stored.zip")));
  const std::string name = "release/mp_rank_00/model_optim_rng.pt";
  ASSERT_OK_AND_ASSIGN(inflated, deflated->openEntry(name));
  ASSERT_OK_AND_ASSIGN(inPlace, stored->openEntry(name));
  ASSERT_OK_AND_ASSIGN(a, readAll(*inflated, 1 << 20));
  ASSERT_OK_AND_ASSIGN(b, readAll(*inPlace, 1 << 20));
  EXPECT_EQ(a, reader_test::readFile(fixture("model_optim_rng.pt")));
  EXPECT_EQ(a, b);
  EXPECT_EQ(inflated->describe(),
            "'" + name + "' in " + fixture("ngc_deflated.zip"));
}

TEST(ZipArchive, NestedArchives) {
  ASSERT_OK_AND_ASSIGN(outer, ZipArchive::open(fixture("ngc_stored.zip")));
  ASSERT_OK_AND_ASSIGN(
      entry, outer->openEntry("release/mp_rank_00/model_optim_rng.pt"));
  ASSERT_OK_AND_ASSIGN(inner, ZipArchive::open(entry));
  EXPECT_TRUE(inner->contains("model_optim_rng/data.pkl"));
  ASSERT_OK_AND_ASSIGN(version, inner->openEntry("model_optim_rng/version"));
  EXPECT_EQ(version->describe(),
            "'model_optim_rng/version' in 'release/mp_rank_00/"
            "model_optim_rng.pt' in " +
                fixture("ngc_stored.zip"));
}

TEST(ZipArchive, CorruptArchives) {
  reader_test::TempDir temp;
  const std::string &dir = temp.path();
  std::string zip = reader_test::readFile(fixture("zoo_zip.pt"));
  reader_test::writeFile(dir + "/truncated.zip", zip.substr(0, zip.size() / 2));
  EXPECT_ERROR(ZipArchive::open(dir + "/truncated.zip"),
               dir + "/truncated.zip: not a readable zip archive");
  reader_test::writeFile(dir + "/garbage.zip", "PK\x03\x04 this is not a zip");
  EXPECT_ERROR(ZipArchive::open(dir + "/garbage.zip"),
               "not a readable zip archive");
  // Flip a byte of stored data: the CRC check catches it on a full read.
  std::string corrupt = zip;
  size_t at = corrupt.find("collections");
  ASSERT_NE(at, std::string::npos);
  corrupt[at] = 'C';
  reader_test::writeFile(dir + "/corrupt.zip", corrupt);
  ASSERT_OK_AND_ASSIGN(archive, ZipArchive::open(dir + "/corrupt.zip"));
  ASSERT_OK_AND_ASSIGN(pickle, archive->openEntry("zoo_zip/data.pkl"));
  EXPECT_ERROR(readAll(*pickle, 1 << 20), "CRC error");
}

} // namespace
