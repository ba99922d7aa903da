// A client channel with a TCP connection of its own, for tests that model separate clients.
//
// A fresh channel's first connect can fail on a loaded machine (UNAVAILABLE, "failed to connect
// to all addresses"), and gRPC then fails calls fast for the whole reconnect backoff: a client
// loop of 500 calls can fail all of them in a few milliseconds. Connecting is not what those tests
// check, so OwnChannel waits (bounded) for the connection; a channel that still is not connected
// is returned as it is, and the calls made on it report why.
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_TESTS_SUPPORT_OWN_CHANNEL_H_
#define SPINDLE_TESTS_SUPPORT_OWN_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

namespace spindle::testing {

inline std::shared_ptr<grpc::Channel> OwnChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // not shared with other channels
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return channel;
}

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_SUPPORT_OWN_CHANNEL_H_
