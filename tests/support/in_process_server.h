// A test fixture base that runs one in-process SpindleServer per test suite on 127.0.0.1:0
// (metrics off), for integration tests that talk to it over a real channel.
#ifndef SPINDLE_TESTS_SUPPORT_IN_PROCESS_SERVER_H_
#define SPINDLE_TESTS_SUPPORT_IN_PROCESS_SERVER_H_

#include <gtest/gtest.h>

#include <utility>

#include "services/server/spindle_server.h"

namespace spindle::testing {

class InProcessServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    services::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "";
    auto server = services::SpindleServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value().release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  inline static services::SpindleServer* server_ = nullptr;
};

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_SUPPORT_IN_PROCESS_SERVER_H_
