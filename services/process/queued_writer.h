// QueuedWriter: the sending half of ProcessService's server-streaming and bidi reactors.
//
// gRPC allows one write in flight per stream; QueuedWriter queues responses, writes them in order,
// and finishes the stream exactly once, after the queued responses when asked to flush. When the
// queue runs dry it calls Refill() (outside its lock) so a reactor can produce more on demand,
// which is how ReadOutput and Attach apply back-pressure: the next chunk is read from the ring
// only once the previous one was written.
//
// Lifetime: the reactor is owned by a shared_ptr (`self_`), released in OnDone; engine callbacks
// hold shared_ptrs, so a late callback finds a finished object, never a deleted one.
//
// Thread-safety: Send/FinishOnce may run on any thread; Refill never runs concurrently with itself.
#ifndef SPINDLE_SERVICES_PROCESS_QUEUED_WRITER_H_
#define SPINDLE_SERVICES_PROCESS_QUEUED_WRITER_H_

#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include <deque>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace spindle::services {

template <typename Base, typename Response>
class QueuedWriter : public Base {
 public:
  // Queues `response` (dropped after FinishOnce).
  void Send(Response response) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_.has_value()) return;
      queue_.push_back(std::move(response));
    }
    Pump();
  }

  // Ends the stream with `status` once; `flush`: after the queued responses.
  void FinishOnce(const grpc::Status& status, bool flush = false) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_.has_value()) return;
      finish_ = status;
      if (!flush) queue_.clear();
    }
    Pump();
  }

  bool finishing() const {
    absl::MutexLock lock(&mu_);
    return finish_.has_value();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finish_.has_value()) {
        finish_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
        queue_.clear();
      }
    }
    Pump();
  }

 protected:
  // Called when nothing is queued and the stream is not finishing: produce more (Send) or
  // arrange to be called again later (Pump()).
  virtual void Refill() {}

  // Writes the next response, refills, or finishes.
  void Pump() {
    while (true) {
      enum { kWrite, kFinish, kRefill } action;
      grpc::Status status;
      {
        absl::MutexLock lock(&mu_);
        if (writing_ || finished_) return;
        if (!queue_.empty()) {
          current_ = std::move(queue_.front());
          queue_.pop_front();
          writing_ = true;
          action = kWrite;
        } else if (finish_.has_value()) {
          finished_ = true;
          status = *finish_;
          action = kFinish;
        } else if (refilling_) {
          again_ = true;  // The running Refill loops once more.
          return;
        } else {
          refilling_ = true;
          again_ = false;
          action = kRefill;
        }
      }
      if (action == kWrite) {
        this->StartWrite(&current_);
        return;
      }
      if (action == kFinish) {
        this->Finish(status);
        return;
      }
      Refill();
      bool again;
      {
        absl::MutexLock lock(&mu_);
        refilling_ = false;
        again = again_;
      }
      if (!again) return;
    }
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<Response> queue_ ABSL_GUARDED_BY(mu_);
  Response current_;
  std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool refilling_ ABSL_GUARDED_BY(mu_) = false;
  bool again_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_QUEUED_WRITER_H_
