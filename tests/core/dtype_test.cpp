// Tests for DType names/sizes and the error message format.
#include <gtest/gtest.h>

#include "vlq/core/dtype.h"
#include "vlq/core/error.h"

TEST(DType, RoundTripsEverySafetensorsName) {
  const char* names[] = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I64",
                         "I32", "I16", "I8",  "U64",  "U32",     "U16",     "U8",      "BOOL"};
  for (const char* n : names) {
    auto t = vlq::parse_dtype(n);
    ASSERT_TRUE(t.has_value()) << n;
    EXPECT_EQ(vlq::dtype_name(*t), n);
  }
  EXPECT_FALSE(vlq::parse_dtype("bf16").has_value());
  EXPECT_FALSE(vlq::parse_dtype("F8_E4M3FN").has_value());
  EXPECT_EQ(vlq::dtype_size(vlq::DType::BF16), 2u);
  EXPECT_EQ(vlq::dtype_size(vlq::DType::F8_E4M3), 1u);
  EXPECT_EQ(vlq::dtype_size(vlq::DType::I64), 8u);
}

TEST(Error, MessageNamesWhereExpectedFoundAndHint) {
  vlq::FormatError e({"a.safetensors: x.weight", "bad shape", "[2,3]", "[3]", "re-export"});
  EXPECT_STREQ(e.what(), "a.safetensors: x.weight: bad shape (expected [2,3], found [3]). Hint: re-export");
}
