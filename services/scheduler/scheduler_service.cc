#include "services/scheduler/scheduler_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/coro_call.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

constexpr int64_t kMaxSleepMs = 86'400'000;

coro::Task<absl::Status> SleepCall(coro::Executor* executor, int64_t duration_ms,
                                   v1::SleepResponse* response, coro::CancellationToken token) {
  const absl::Time start = absl::Now();
  SPINDLE_CO_RETURN_IF_ERROR(co_await executor->SleepFor(absl::Milliseconds(duration_ms), token));
  const absl::Time woke = absl::Now();
  response->set_slept_ms(absl::ToInt64Milliseconds(woke - start));
  const int64_t micros = absl::ToUnixMicros(woke);
  response->mutable_woke_at()->set_seconds(micros / 1'000'000);
  response->mutable_woke_at()->set_nanos(static_cast<int32_t>(micros % 1'000'000) * 1000);
  co_return absl::OkStatus();
}

class SchedulerCapability final : public Capability {
 public:
  explicit SchedulerCapability(CapabilityContext& context) : service_(context.executor) {}

  std::vector<ServiceEntry> Services() override {
    return {{v1::SchedulerService::service_full_name(), &service_}};
  }

 private:
  SchedulerServiceImpl service_;
};

}  // namespace

grpc::ServerUnaryReactor* SchedulerServiceImpl::Sleep(grpc::CallbackServerContext* context,
                                                      const v1::SleepRequest* request,
                                                      v1::SleepResponse* response) {
  if (request->duration_ms() < 0 || request->duration_ms() > kMaxSleepMs) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(InvalidArgument(
        "INVALID_DURATION", absl::StrCat("duration_ms ", request->duration_ms(),
                                         " is out of range 0..", kMaxSleepMs))));
    return reactor;
  }
  return StartUnary(context, executor_, [&](coro::CancellationToken token) {
    return SleepCall(&executor_, request->duration_ms(), response, std::move(token));
  });
}

std::unique_ptr<Capability> MakeSchedulerCapability(CapabilityContext& context) {
  return std::make_unique<SchedulerCapability>(context);
}

}  // namespace spindle::services
