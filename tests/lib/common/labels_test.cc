#include "spindle/common/labels.h"

#include <gtest/gtest.h>

#include <string>

#include "spindle/common/status.h"

namespace spindle {
namespace {

TEST(LabelsTest, AcceptsLabelsWithinTheRules) {
  Labels labels{{"app", "web"},
                {"team.eu/tier-1_a", std::string(kMaxLabelValueBytes, 'v')},
                {std::string(kMaxLabelKeyBytes, 'k'), ""}};
  EXPECT_TRUE(ValidateLabels("spec.labels", labels).ok());
  Labels many;
  for (size_t i = 0; i < kMaxLabels; ++i) many["k" + std::to_string(i)] = "v";
  EXPECT_TRUE(ValidateLabels("spec.labels", many).ok());
}

TEST(LabelsTest, RejectsBadLabelsNamingFieldAndKey) {
  struct Case {
    Labels labels;
    std::string expected_in_message;
  };
  Labels too_many;
  for (size_t i = 0; i <= kMaxLabels; ++i) too_many["k" + std::to_string(i)] = "v";
  for (const Case& c : std::vector<Case>{
           {{{"", "v"}}, "spec.labels: label key '' must be 1..63 bytes"},
           {{{std::string(64, 'k'), "v"}}, "must be 1..63 bytes"},
           {{{"App", "v"}}, "label key 'App' may only hold [a-z0-9._/-]"},
           {{{"a b", "v"}}, "label key 'a b'"},
           {{{"a=b", "v"}}, "label key 'a=b'"},
           {{{std::string("a\0b", 3), "v"}}, "label key 'a\\000b'"},
           {{{"big", std::string(257, 'v')}}, "value of 'big' is 257 bytes, at most 256"},
           {too_many, "spec.labels: 33 labels, at most 32"},
       }) {
    absl::Status status = ValidateLabels("spec.labels", c.labels);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.expected_in_message;
    EXPECT_EQ(Reason(status), "INVALID_LABELS");
    EXPECT_NE(status.message().find(c.expected_in_message), absl::string_view::npos)
        << status.message();
  }
}

TEST(LabelSelectorTest, EmptySelectsEverything) {
  for (const char* text : {"", "   "}) {
    auto selector = LabelSelector::Parse("label_selector", text);
    ASSERT_TRUE(selector.ok()) << text;
    EXPECT_TRUE(selector->SelectsAll());
    EXPECT_TRUE(selector->Matches({}));
    EXPECT_TRUE(selector->Matches({{"a", "b"}}));
  }
}

TEST(LabelSelectorTest, EveryRequirementMustHold) {
  const Labels web{{"app", "web"}, {"tier", "gold"}};
  const Labels db{{"app", "db"}};
  struct Case {
    std::string text;
    bool web;
    bool db;
  };
  for (const Case& c : std::vector<Case>{
           {"app=web", true, false},
           {"app!=web", false, true},
           {"tier", true, false},
           {"!tier", false, true},
           {"app", true, true},
           {" app = web , tier ", true, false},
           {"app!=db,!tier", false, false},
           {"app=web,tier=silver", false, false},
           {"missing!=x", true, true},
       }) {
    auto selector = LabelSelector::Parse("label_selector", c.text);
    ASSERT_TRUE(selector.ok()) << c.text << ": " << selector.status();
    EXPECT_FALSE(selector->SelectsAll());
    EXPECT_EQ(selector->Matches(web), c.web) << c.text;
    EXPECT_EQ(selector->Matches(db), c.db) << c.text;
  }
}

TEST(LabelSelectorTest, RejectsBadSelectorsNamingFieldAndRequirement) {
  struct Case {
    std::string text;
    std::string expected_in_message;
  };
  for (const Case& c : std::vector<Case>{
           {"=x", "label_selector: requirement '=x': label key '' must be 1..63 bytes"},
           {"a=b,,c", "requirement '': label key ''"},
           {"!", "requirement '!'"},
           {"Bad Key", "label key 'Bad Key' may only hold"},
           {"a b=c", "requirement 'a b=c': label key 'a b'"},
           {std::string(1025, 'a'), "label_selector: 1025 bytes, at most 1024"},
       }) {
    auto selector = LabelSelector::Parse("label_selector", c.text);
    ASSERT_FALSE(selector.ok()) << c.text;
    EXPECT_EQ(selector.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Reason(selector.status()), "INVALID_SELECTOR");
    EXPECT_NE(selector.status().message().find(c.expected_in_message), absl::string_view::npos)
        << selector.status().message();
  }
}

}  // namespace
}  // namespace spindle
