// Tests of the safetensors reader: valid files, and one test per malformed-file class (the list in
// docs/robustness.md), each checking the error type and that the message names file/tensor/values.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "io/io_test_util.h"
#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"

using namespace vlq;
using namespace vlq::io;
using namespace vlq::testing;

namespace {

const std::string kF = "f.safetensors";

SafetensorsHeader parse(std::string_view header, std::uint64_t data_size) {
  return parse_safetensors_header(header, data_size, kF);
}

SafetensorsHeader parse_file_bytes(const std::string& bytes) {
  return parse_safetensors_bytes(bytes_of(bytes), kF);
}

}  // namespace

// ---- valid files --------------------------------------------------------------------------------

TEST(SafetensorsReader, ParsesMinimalFileAndViewsBytes) {
  TempDir d;
  const std::string data = pattern(24);
  write_bytes(d / "a.safetensors",
              st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", data));
  auto f = SafetensorsFile::open(d / "a.safetensors");
  ASSERT_EQ(f.tensors().size(), 1u);
  const TensorInfo& t = f.tensors()[0];
  EXPECT_EQ(t.name, "w");
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(t.numel(), 6u);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(str_of(f.data(t)), data);
  EXPECT_EQ(str_of(f.data("w")), data);
  ASSERT_NE(f.find("w"), nullptr);
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_EQ(f.file_size(), 8 + f.header_size() + 24);
  f.advise_sequential();
  f.advise_willneed();
  f.advise_willneed(t);
  f.advise_dontneed(t);
  EXPECT_EQ(str_of(f.data(t)), data);  // still readable after dontneed
  // The pread-only path agrees.
  EXPECT_EQ(read_safetensors_header(d / "a.safetensors"), f.header());
  // Moving keeps the mapping valid.
  SafetensorsFile g = std::move(f);
  EXPECT_EQ(str_of(g.data("w")), data);
  VLQ_EXPECT_ERROR(g.data("nope"), FormatError, "nope");
}

TEST(SafetensorsReader, AcceptsEmptyHeaderScalarsZeroSizeAndAnyEntryOrder) {
  EXPECT_TRUE(parse("{}", 0).tensors.empty());
  EXPECT_TRUE(parse("{}      ", 0).tensors.empty());  // space padding, as the reference writes it
  // Entries in any order; zero-size tensors share an offset with the next tensor.
  auto h = parse(R"({"c":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
                 R"("z":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},)"
                 R"("s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                 R"("y":{"dtype":"BF16","shape":[3,0],"data_offsets":[6,6]}})",
                 6);
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].name, "s");
  EXPECT_EQ(h.tensors[0].numel(), 1u);
  EXPECT_EQ(h.tensors[1].name, "z");
  EXPECT_EQ(h.tensors[2].name, "c");
  EXPECT_EQ(h.tensors[3].name, "y");
}

TEST(SafetensorsReader, ReadsMetadataStringsAndNullMetadata) {
  auto h = parse(R"({"__metadata__":{"format":"pt","x":""},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.metadata.at("x"), "");
  EXPECT_EQ(h.tensors.size(), 1u);
  EXPECT_TRUE(parse(R"({"__metadata__":null})", 0).metadata.empty());  // reference reads null as absent
}

TEST(SafetensorsReader, AcceptsEverySupportedDtypeWithItsSize) {
  const std::pair<const char*, int> dts[] = {{"F64", 8}, {"F32", 4}, {"F16", 2},     {"BF16", 2},
                                            {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}, {"I64", 8},
                                            {"I32", 4}, {"I16", 2}, {"I8", 1},     {"U64", 8},
                                            {"U32", 4}, {"U16", 2}, {"U8", 1},     {"BOOL", 1}};
  for (auto [name, size] : dts) {
    std::string h = std::string(R"({"t":{"dtype":")") + name + R"(","shape":[3],"data_offsets":[0,)" +
                    std::to_string(3 * size) + "]}}";
    auto r = parse(h, 3 * size);
    ASSERT_EQ(r.tensors.size(), 1u) << name;
    EXPECT_EQ(dtype_name(r.tensors[0].dtype), name);
  }
}

TEST(SafetensorsReader, IgnoresUnknownEntryFieldsLikeTheReference) {
  auto h = parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":[1,2]}})", 1);
  EXPECT_EQ(h.tensors.size(), 1u);
}

// ---- malformed: the 8-byte prefix ---------------------------------------------------------------

TEST(SafetensorsMalformed, TruncatedFileShorterThanPrefix) {
  VLQ_EXPECT_ERROR(parse_file_bytes(""), FormatError, kF, "too small", "0 bytes");
  VLQ_EXPECT_ERROR(parse_file_bytes(std::string("\x02\x00\x00", 3)), FormatError, kF, "at least 8 bytes", "3 bytes");
  TempDir d;
  write_bytes(d / "t.safetensors", "abc");
  VLQ_EXPECT_ERROR(SafetensorsFile::open(d / "t.safetensors"), FormatError, "t.safetensors", "too small");
  VLQ_EXPECT_ERROR(read_safetensors_header(d / "t.safetensors"), FormatError, "t.safetensors", "too small");
  write_bytes(d / "e.safetensors", "");
  VLQ_EXPECT_ERROR(SafetensorsFile::open(d / "e.safetensors"), FormatError, "e.safetensors", "too small");
}

TEST(SafetensorsMalformed, TruncatedFileCutInsideData) {
  // A valid file cut short: the last tensor's data runs past the end.
  std::string full = raw_file({{"a", "F32", {4}, 16}, {"b", "F32", {4}, 16}});
  VLQ_EXPECT_ERROR(parse_file_bytes(full.substr(0, full.size() - 5)), FormatError, "f.safetensors: b",
                   "past the end", "at most 27");
  // Cut inside the header.
  VLQ_EXPECT_ERROR(parse_file_bytes(full.substr(0, 20)), FormatError, "runs past the end of the file");
}

TEST(SafetensorsMalformed, HeaderLengthLargerThanFile) {
  VLQ_EXPECT_ERROR(parse_file_bytes(le64(100) + "{}"), FormatError, kF, "past the end of the file",
                   "at most 2 bytes", "100 bytes");
  TempDir d;
  write_bytes(d / "h.safetensors", le64(1000) + "{}");
  VLQ_EXPECT_ERROR(read_safetensors_header(d / "h.safetensors"), FormatError, "h.safetensors", "1000 bytes");
  VLQ_EXPECT_ERROR(SafetensorsFile::open(d / "h.safetensors"), FormatError, "h.safetensors", "1000 bytes");
}

TEST(SafetensorsMalformed, HeaderLengthOver100MB) {
  VLQ_EXPECT_ERROR(parse_file_bytes(le64(100'000'001) + "{}"), FormatError, "100 MB", "100000001 bytes");
  VLQ_EXPECT_ERROR(parse_file_bytes(le64(~0ull) + "{}"), FormatError, "100 MB", "18446744073709551615");
  TempDir d;
  write_bytes(d / "big.safetensors", le64(200'000'000) + "{}");
  VLQ_EXPECT_ERROR(read_safetensors_header(d / "big.safetensors"), FormatError, "big.safetensors", "100 MB");
}

// ---- malformed: the JSON ------------------------------------------------------------------------

TEST(SafetensorsMalformed, NonObjectJson) {
  VLQ_EXPECT_ERROR(parse("[]", 0), FormatError, kF, "begin with '{'", "'['");
  VLQ_EXPECT_ERROR(parse("\"x\"", 0), FormatError, "begin with '{'");
  VLQ_EXPECT_ERROR(parse("17", 0), FormatError, "begin with '{'");
  VLQ_EXPECT_ERROR(parse(" {}", 0), FormatError, "begin with '{'", "' '");  // README: MUST begin with '{'
  VLQ_EXPECT_ERROR(parse("", 0), FormatError, "begin with '{'", "empty header");
}

TEST(SafetensorsMalformed, BadJson) {
  VLQ_EXPECT_ERROR(parse(R"({"a":})", 0), FormatError, kF, "not valid JSON");
  VLQ_EXPECT_ERROR(parse(R"({"a":1,})", 0), FormatError, "not valid JSON");
  VLQ_EXPECT_ERROR(parse(R"({"a" 1})", 0), FormatError, "not valid JSON");
  VLQ_EXPECT_ERROR(parse("{}}", 0), FormatError, "not valid JSON");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype")", 0), FormatError, "does not end with '}'");
  VLQ_EXPECT_ERROR(parse("{} x", 0), FormatError, "does not end with '}'", "'x'");
  VLQ_EXPECT_ERROR(parse("{}\n", 0), FormatError, "does not end with '}'", "0x0a");  // only 0x20 padding
  VLQ_EXPECT_ERROR(parse(std::string("{}\0", 3), 0), FormatError, "0x00");
  VLQ_EXPECT_ERROR(parse("{\"\xff\":1}", 0), FormatError, "not valid JSON");           // invalid UTF-8
  VLQ_EXPECT_ERROR(parse(R"({"\ud800":1})", 0), FormatError, "not valid JSON");        // lone surrogate
  VLQ_EXPECT_ERROR(parse(R"({/*c*/})", 0), FormatError, "not valid JSON");             // no comments
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":{"a":[[[1]]]}})", 0), FormatError, "nested too deeply");
}

TEST(SafetensorsMalformed, DuplicateNames) {
  const std::string e = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  VLQ_EXPECT_ERROR(parse("{\"a\":" + e + ",\"a\":" + e + "}", 1), FormatError, "f.safetensors: a: duplicate key 'a'");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", 1), FormatError,
                   "f.safetensors: a: duplicate key 'dtype'", "under 'a'");
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":{"k":"1","k":"2"}})", 0), FormatError, "duplicate key 'k'",
                   "under '__metadata__'");
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":{},"__metadata__":{}})", 0), FormatError, "duplicate key '__metadata__'");
}

// ---- malformed: entries -------------------------------------------------------------------------

TEST(SafetensorsMalformed, EntryMissingFields) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"shape":[1],"data_offsets":[0,1]}})", 1), FormatError, "f.safetensors: a",
                   "no \"dtype\"");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", 1), FormatError, "f.safetensors: a",
                   "no \"shape\"");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1]}})", 1), FormatError, "f.safetensors: a",
                   "no \"data_offsets\"");
}

TEST(SafetensorsMalformed, EntryWrongTypes) {
  VLQ_EXPECT_ERROR(parse(R"({"a":5})", 0), FormatError, "f.safetensors: a", "not an object", "integer 5");
  VLQ_EXPECT_ERROR(parse(R"({"a":[]})", 0), FormatError, "f.safetensors: a", "not an object", "array");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":5,"shape":[1],"data_offsets":[0,1]}})", 1), FormatError,
                   "\"dtype\" is not a string", "integer 5");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})", 1), FormatError,
                   "\"shape\" is not an array", "string \"1\"");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":{"b":0}}})", 1), FormatError,
                   "not a pair", "object");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", 1), FormatError,
                   "not a pair", "1 elements");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", 1), FormatError,
                   "not a pair", "3 elements");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":["0",1]}})", 1), FormatError,
                   "not a non-negative integer", "string \"0\"");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", 1), FormatError,
                   "not a non-negative integer", "negative integer -1");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.0]}})", 1), FormatError,
                   "not a non-negative integer", "non-integer number");
}

TEST(SafetensorsMalformed, DimsNotNonNegativeIntegers) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", 0), FormatError,
                   "f.safetensors: a", "shape dim 0", "negative integer -1");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[1,1.5],"data_offsets":[0,1]}})", 1), FormatError,
                   "shape dim 1", "non-integer number 1.5");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[2e0],"data_offsets":[0,2]}})", 2), FormatError,
                   "shape dim 0", "non-integer");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[true],"data_offsets":[0,1]}})", 1), FormatError,
                   "shape dim 0", "true");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[null],"data_offsets":[0,1]}})", 1), FormatError,
                   "shape dim 0", "null");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", 1), FormatError,
                   "nested too deeply");
  // Larger than int64 (the reference would accept it with a 0 dim; vlq's shapes are int64).
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[9223372036854775808,0],"data_offsets":[0,0]}})", 0),
                   FormatError, "too large", "9223372036854775808");
  // Beyond u64: a float for the JSON parser.
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,0]}})", 0),
                   FormatError, "shape dim 0", "non-integer");
}

TEST(SafetensorsMalformed, UnknownDtypeIsNamed) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", 1), FormatError,
                   "f.safetensors: a", "unknown dtype \"Q7\"", "F8_E4M3");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"bf16","shape":[1],"data_offsets":[0,2]}})", 2), FormatError,
                   "\"bf16\"");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F8_E4M3FN","shape":[1],"data_offsets":[0,1]}})", 1), FormatError,
                   "\"F8_E4M3FN\"");
  // Valid in newer safetensors, not handled by vlq.
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1), UnsupportedError,
                   "f.safetensors: a", "\"F4\"");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", 8), UnsupportedError,
                   "\"C64\"");
}

TEST(SafetensorsMalformed, ByteSizeNotNumelTimesDtypeSize) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), FormatError,
                   "f.safetensors: a", "expected 12 bytes", "found 8 bytes");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}})", 4), FormatError,
                   "expected 2 bytes", "found 4 bytes");
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,1]}})", 1), FormatError,
                   "expected 0 bytes");
}

TEST(SafetensorsMalformed, NumelTimesSizeOverflow) {
  // 2^62 * 8 = 2^65 elements.
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[4611686018427387904,8],"data_offsets":[0,0]}})", 0),
                   FormatError, "f.safetensors: a", "overflows 64 bits");
  // 2^62 elements fit, 2^62 * 4 bytes do not.
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0),
                   FormatError, "byte size overflows");
  // Left-to-right like the reference: the overflow is reported even though a later dim is 0.
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[4611686018427387904,8,0],"data_offsets":[0,0]}})", 0),
                   FormatError, "overflows 64 bits");
  // A huge span that matches a huge shape still has to fit in the file.
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[4611686018427387904],"data_offsets":[0,4611686018427387904]}})", 0),
                   FormatError, "past the end");
}

// ---- malformed: offsets -------------------------------------------------------------------------

TEST(SafetensorsMalformed, OffsetsOverlap) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         12),
                   FormatError, "f.safetensors: b", "overlaps tensor 'a'", "expected data_offsets begin 8", "found 4");
  // Two tensors on the same bytes.
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                         4),
                   FormatError, "overlaps");
}

TEST(SafetensorsMalformed, OffsetsGap) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                         12),
                   FormatError, "f.safetensors: b", "gap of 4 bytes", "after 'a'");
}

TEST(SafetensorsMalformed, OffsetsPastTheEnd) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), FormatError,
                   "f.safetensors: a", "past the end", "at most 4", "found 8");
}

TEST(SafetensorsMalformed, OffsetsNotStartingAtZero) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), FormatError,
                   "f.safetensors: a", "does not start at offset 0", "found 4");
}

TEST(SafetensorsMalformed, OffsetsEndBeforeBegin) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4), FormatError,
                   "f.safetensors: a", "end is before begin", "[4, 0]");
}

TEST(SafetensorsMalformed, TrailingBytesAfterLastTensor) {
  VLQ_EXPECT_ERROR(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8), FormatError, kF,
                   "4 bytes after the last tensor");
  VLQ_EXPECT_ERROR(parse("{}", 1), FormatError, "1 bytes after the last tensor");
  std::string ok = raw_file({{"a", "U8", {3}, 3}});
  VLQ_EXPECT_ERROR(parse_file_bytes(ok + "junk"), FormatError, "4 bytes after the last tensor");
}

TEST(SafetensorsMalformed, MetadataNotStringToString) {
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":{"a":1}})", 0), FormatError, "f.safetensors: __metadata__",
                   "value of 'a' is not a string", "integer 1");
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":{"a":{"b":"c"}}})", 0), FormatError, "value of 'a'", "object");
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":{"a":null}})", 0), FormatError, "value of 'a'", "null");
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":["a"]})", 0), FormatError, "__metadata__ is not an object", "array");
  VLQ_EXPECT_ERROR(parse(R"({"__metadata__":"pt"})", 0), FormatError, "__metadata__ is not an object", "string");
}

// ---- file-system errors -------------------------------------------------------------------------

TEST(SafetensorsReader, MissingFileOrDirectoryIsIoError) {
  TempDir d;
  VLQ_EXPECT_ERROR(SafetensorsFile::open(d / "missing.safetensors"), IoError, "missing.safetensors", "cannot open");
  VLQ_EXPECT_ERROR(read_safetensors_header(d / "missing.safetensors"), IoError, "missing.safetensors");
  VLQ_EXPECT_ERROR(read_safetensors_header(d.path()), IoError, "not a regular file", "a directory");
  VLQ_EXPECT_ERROR(SafetensorsFile::open(d.path()), IoError, "not a regular file");
}

TEST(SafetensorsReader, ErrorInfoCarriesWhereExpectedFound) {
  try {
    parse(R"({"w.weight":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
    FAIL() << "no exception";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.info().where, "f.safetensors: w.weight");
    EXPECT_FALSE(e.info().expected.empty());
    EXPECT_FALSE(e.info().found.empty());
    EXPECT_FALSE(e.info().hint.empty());
  }
}

TEST(SafetensorsReader, ConcurrentReadsOfOneMapping) {
  TempDir d;
  const std::string bytes = raw_file({{"a", "U8", {1000}, 1000}, {"b", "I32", {10}, 40}});
  write_bytes(d / "c.safetensors", bytes);
  auto f = SafetensorsFile::open(d / "c.safetensors");
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      for (int k = 0; k < 100; ++k)
        if (f.data("a").size() == 1000 && f.data("b").size() == 40) ++ok;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 400);
}
