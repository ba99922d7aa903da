// A tiny HTTP/1.1 server on 127.0.0.1 (port 0) for tests of the HTTP client: one thread accepts,
// one thread per connection answers one request and closes ("Connection: close").
//
// Paths:
//   /delay/<ms>        200 after <ms> milliseconds, body "ok"
//   /status/<code>     that status, body "status <code>"
//   /bytes/<n>         200 with <n> bytes of 'x'
//   /truncate          200 announcing Content-Length 100, sends 10 bytes and closes
//   /hang              reads the request and never answers (until Stop)
//   /redirect/<n>      302 to /redirect/<n-1>; /redirect/0 is 200
//   /headers           200 echoing the request head
//   anything else      200 "hello"
//
// Thread-safety: thread-safe. Stop() (also the destructor) closes everything and joins.
#ifndef SPINDLE_TESTS_LIB_HTTP_LOOPBACK_HTTP_SERVER_H_
#define SPINDLE_TESTS_LIB_HTTP_LOOPBACK_HTTP_SERVER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace spindle::testing {

class LoopbackHttpServer {
 public:
  LoopbackHttpServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(listen_fd_, 1024);
    socklen_t length = sizeof(address);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~LoopbackHttpServer() { Stop(); }

  int port() const { return port_; }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // Requests whose head was read so far.
  int requests() const { return requests_.load(); }
  // Connections currently open (accepted and not yet closed by either side).
  int open_connections() const { return open_.load(); }
  // The most /delay/ requests that were being answered at the same time.
  int most_delayed_at_once() const { return most_delayed_.load(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) {
        return;
      }
      stopped_ = true;
    }
    cv_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) {
      acceptor_.join();
    }
    ::close(listen_fd_);
    std::vector<std::thread> workers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      workers.swap(workers_);
    }
    for (auto& worker : workers) {
      worker.join();
    }
  }

 private:
  void AcceptLoop() {
    while (true) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopped_) {
          return;
        }
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) {
        ::close(fd);
        return;
      }
      ++open_;
      workers_.emplace_back([this, fd] {
        Serve(fd);
        ::close(fd);
        --open_;
      });
    }
  }

  // Waits up to `ms` unless stopped; false when stopped.
  bool WaitFor(int ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return !cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopped_; });
  }

  // Waits until stopped or the peer closed the connection.
  void Hang(int fd) {
    while (WaitFor(20)) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) {
        char buffer[256];
        if (::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT) == 0) {
          return;
        }
      }
    }
  }

  static void SendAll(int fd, const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        return;
      }
      sent += static_cast<size_t>(n);
    }
  }

  static void Respond(int fd, int status, const std::string& body,
                      const std::string& extra_headers = "") {
    SendAll(fd, "HTTP/1.1 " + std::to_string(status) +
                    " X\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n" + extra_headers + "\r\n" + body);
  }

  void Serve(int fd) {
    std::string head;
    char buffer[4096];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
      pollfd p{fd, POLLIN, 0};
      int ready = ::poll(&p, 1, 50);
      if (ready == 0) {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopped_) {
          return;
        }
        continue;
      }
      ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) {
        return;
      }
      head.append(buffer, static_cast<size_t>(n));
    }
    ++requests_;
    const size_t start = head.find(' ') + 1;
    const std::string path = head.substr(start, head.find(' ', start) - start);
    const auto number_after = [&](const std::string& prefix) {
      return std::stoi(path.substr(prefix.size()));
    };
    if (path.rfind("/delay/", 0) == 0) {
      const int now = ++delayed_;
      int most = most_delayed_.load();
      while (now > most && !most_delayed_.compare_exchange_weak(most, now)) {
      }
      const bool answer = WaitFor(number_after("/delay/"));
      --delayed_;
      if (answer) {
        Respond(fd, 200, "ok");
      }
    } else if (path.rfind("/status/", 0) == 0) {
      const int code = number_after("/status/");
      Respond(fd, code, "status " + std::to_string(code));
    } else if (path.rfind("/bytes/", 0) == 0) {
      Respond(fd, 200, std::string(number_after("/bytes/"), 'x'));
    } else if (path == "/truncate") {
      SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789");
    } else if (path == "/hang") {
      Hang(fd);
    } else if (path.rfind("/redirect/", 0) == 0) {
      const int left = number_after("/redirect/");
      if (left == 0) {
        Respond(fd, 200, "arrived");
      } else {
        Respond(fd, 302, "", "Location: /redirect/" + std::to_string(left - 1) + "\r\n");
      }
    } else if (path == "/headers") {
      Respond(fd, 200, head);
    } else {
      Respond(fd, 200, "hello");
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::atomic<int> requests_{0};
  std::atomic<int> open_{0};
  std::atomic<int> delayed_{0};
  std::atomic<int> most_delayed_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_LIB_HTTP_LOOPBACK_HTTP_SERVER_H_
