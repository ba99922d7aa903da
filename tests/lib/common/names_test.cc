#include "spindle/common/names.h"

#include <gtest/gtest.h>

#include <string>

#include "spindle/common/status.h"

namespace spindle {
namespace {

TEST(NamesTest, AcceptsValidNames) {
  for (const char* name : {"jobs", "jobs/eu/high", "a", "A-b_c.d:e", "0"}) {
    EXPECT_TRUE(ValidateName("name", name).ok()) << name;
  }
  EXPECT_TRUE(ValidateName("name", std::string(kMaxNameLength, 'x')).ok());
}

TEST(NamesTest, RejectsBadNamesNamingFieldAndValue) {
  struct Case {
    std::string name;
    std::string expected_in_message;
  };
  for (const Case& c : std::vector<Case>{
           {"", "queue must not be empty"},
           {"a b", "queue 'a b' has invalid character ' '"},
           {"a//b", "empty '/' segment"},
           {"/a", "must not start with"},
           {".a", "must not start with"},
           {"a/", "must not end with '/'"},
           {std::string(kMaxNameLength + 1, 'x'), "129 bytes long; the limit is 128"},
           {std::string("a\0b", 3), "invalid character '\\000'"},
       }) {
    absl::Status s = ValidateName("queue", c.name);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_EQ(Reason(s), "INVALID_NAME");
    EXPECT_NE(s.message().find(c.expected_in_message), std::string::npos)
        << "message: " << s.message() << " expected: " << c.expected_in_message;
  }
}

TEST(NamesTest, LongBadNameIsCutInTheMessage) {
  absl::Status s = ValidateName("queue", std::string(10000, ' '));
  EXPECT_LT(s.message().size(), 200u);
}

TEST(NamesTest, PrefixMayBeEmptyOrEndWithSlash) {
  EXPECT_TRUE(ValidatePrefix("prefix", "").ok());
  EXPECT_TRUE(ValidatePrefix("prefix", "jobs/").ok());
  EXPECT_EQ(ValidatePrefix("prefix", "jo bs").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace spindle
