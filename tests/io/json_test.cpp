// io::read_json_file_if_present: absent → nullopt; present → the one reader with its errors.
#include <gtest/gtest.h>

#include <fstream>

#include "io/io_test_util.h"
#include "vlq/core/error.h"
#include "vlq/io/json.h"

using vlq::testing::TempDir;

TEST(JsonFile, IfPresentDistinguishesAbsentFromBroken) {
  TempDir d;
  EXPECT_FALSE(vlq::io::read_json_file_if_present(d.path() / "absent.json"));
  std::ofstream(d.path() / "ok.json") << R"({"a": 1})";
  auto ok = vlq::io::read_json_file_if_present(d.path() / "ok.json");
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)["a"], 1);
  std::ofstream(d.path() / "bad.json") << R"({"a": )";
  EXPECT_THROW(vlq::io::read_json_file_if_present(d.path() / "bad.json"), vlq::FormatError);
  std::ofstream(d.path() / "list.json") << "[1]";
  EXPECT_THROW(vlq::io::read_json_file_if_present(d.path() / "list.json"), vlq::FormatError);
  EXPECT_TRUE(vlq::io::read_json_file_if_present(d.path() / "list.json", /*require_object=*/false));
}

// Found by a new-user attack run: an empty config.json said "parse error at byte 1".
TEST(JsonFile, EmptyFileSaysItIsEmpty) {
  TempDir d;
  for (const char* text : {"", " \n\t\n"}) {
    std::ofstream(d.path() / "config.json", std::ios::trunc) << text;
    try {
      vlq::io::read_json_file(d.path() / "config.json");
      ADD_FAILURE() << "accepted an empty file";
    } catch (const vlq::FormatError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("config.json"), std::string::npos) << m;
      EXPECT_NE(m.find("the file is empty"), std::string::npos) << m;
      EXPECT_EQ(m.find("parse error"), std::string::npos) << m;
    }
  }
}
