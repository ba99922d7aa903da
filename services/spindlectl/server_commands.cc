// spindlectl health | info | limits | stats
#include <cstdio>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"
#include "services/spindlectl/cli.h"
#include "spindle/v1/server.grpc.pb.h"

namespace spindle::cli {
namespace {

// The value of a singular scalar field as text; empty for a message or repeated field. Fields of
// any scalar type print, so a field added to the proto never aborts the human output.
std::string FieldText(const google::protobuf::Message& m,
                      const google::protobuf::FieldDescriptor* field) {
  using google::protobuf::FieldDescriptor;
  const auto* r = m.GetReflection();
  if (field->is_repeated()) {
    return "";
  }
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return std::to_string(r->GetInt32(m, field));
    case FieldDescriptor::CPPTYPE_INT64:
      return std::to_string(r->GetInt64(m, field));
    case FieldDescriptor::CPPTYPE_UINT32:
      return std::to_string(r->GetUInt32(m, field));
    case FieldDescriptor::CPPTYPE_UINT64:
      return std::to_string(r->GetUInt64(m, field));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return std::to_string(r->GetDouble(m, field));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return std::to_string(r->GetFloat(m, field));
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, field) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnum(m, field)->name();
    case FieldDescriptor::CPPTYPE_STRING:
      return r->GetString(m, field);
    default:
      return "";
  }
}

// Prints every scalar field of `m`, one per line, names prefixed by `prefix`.
void PrintFields(const google::protobuf::Message& m, const std::string& prefix, int width) {
  const auto* descriptor = m.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE ||
        field->is_repeated()) {
      continue;
    }
    std::printf("%-*s %s\n", width, (prefix + field->name()).c_str(), FieldText(m, field).c_str());
  }
}

int Health(Cli& cli, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(cli.channel());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->Check(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf(
        "%s\n",
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  });
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kOk : kUnavailable;
}

int Info(Cli& cli) {
  auto stub = v1::ServerService::NewStub(cli.channel());
  v1::GetServerInfoResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->GetServerInfo(context.get(), {}, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("version:         %s (%s, %s)\n", response.version().c_str(),
                response.build_type().c_str(), response.compiler().c_str());
    std::printf("api:             %s\n", response.api_version().c_str());
    std::printf("host:            %s (pid %ld)\n", response.hostname().c_str(),
                static_cast<long>(response.pid()));
    std::printf("listen:          %s\n", response.listen_address().c_str());
    std::printf("metrics:         %s\n",
                response.metrics_address().empty() ? "off" : response.metrics_address().c_str());
    std::printf("uptime:          %.1fs\n", static_cast<double>(response.uptime_ms()) / 1000);
    for (const auto& service : response.services()) {
      std::printf("service:         %s\n", service.c_str());
    }
  });
}

int Limits(Cli& cli) {
  auto stub = v1::ServerService::NewStub(cli.channel());
  v1::GetLimitsResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->GetLimits(context.get(), {}, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response,
                   [&](const google::protobuf::Message&) { PrintFields(response, "", 28); });
}

int Stats(Cli& cli) {
  auto stub = v1::ServerService::NewStub(cli.channel());
  v1::GetStatsResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->GetStats(context.get(), {}, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    PrintFields(response, "", 33);
    PrintFields(response.executor(), "executor.", 33);
    PrintFields(response.tables(), "tables.", 33);
  });
}

}  // namespace

void AddServerCommands(CLI::App& app, Cli& cli, int* exit_code) {
  auto* health = app.add_subcommand("health", "check the server's gRPC health (exit 0 if SERVING)");
  auto service = std::make_shared<std::string>();
  health->add_option("--service", *service, "service name to check; empty for the whole server");
  health->callback([&cli, exit_code, service] { *exit_code = Health(cli, *service); });

  app.add_subcommand("info", "server version, build and addresses")->callback([&cli, exit_code] {
    *exit_code = Info(cli);
  });
  app.add_subcommand("limits", "the limits the server enforces")->callback([&cli, exit_code] {
    *exit_code = Limits(cli);
  });
  app.add_subcommand("stats", "executor and table statistics")->callback([&cli, exit_code] {
    *exit_code = Stats(cli);
  });
}

}  // namespace spindle::cli
