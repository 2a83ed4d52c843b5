// Helpers shared by the HTTP server and upstream tests.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace airlock::control::http::testing {

// Lets a coroutine on the server wait for an event on a test thread (or another strand). It
// orders events; it does not measure time: the 1 ms step only bounds the polling.
class Signal {
 public:
  void set() { set_ = true; }
  bool is_set() const { return set_; }
  boost::asio::awaitable<void> wait() {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    while (!set_) {
      timer.expires_after(std::chrono::milliseconds(1));
      co_await timer.async_wait(boost::asio::use_awaitable);
    }
  }

 private:
  std::atomic<bool> set_{false};
};

// An io_context run by two threads, so the code under test meets real concurrency.
class IoThreads {
 public:
  explicit IoThreads(int threads = 2) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~IoThreads() { join(); }
  IoThreads(const IoThreads&) = delete;
  IoThreads& operator=(const IoThreads&) = delete;

  boost::asio::io_context& io() { return io_; }
  void join() {
    work_.reset();
    io_.stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
};

}  // namespace airlock::control::http::testing
