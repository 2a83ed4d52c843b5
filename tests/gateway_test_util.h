// Helpers shared by the gateway's end-to-end tests: an upstream provider whose answers the test
// scripts, a client that sends one request per connection, and the Gateway itself on loopback
// with a SQLite request log in a scratch directory.
#pragma once

#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "control/gateway/gateway.h"
#include "policy/policy.h"

namespace airlock::control::gateway::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

// Unique enough for scratch directory names and canary keys.
inline std::string random_hex(size_t bytes) {
  std::vector<unsigned char> drawn(bytes);
  randombytes_buf(drawn.data(), drawn.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : drawn) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

// Header names are case-insensitive; the tests compare them lower-cased.
inline std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// ---------------------------------------------------------------- the upstream

// One request as it reached the upstream.
struct Seen {
  std::string method;
  std::string target;
  std::multimap<std::string, std::string> headers;  // lower-cased names
  std::string body;

  std::vector<std::string> all(const std::string& name) const {
    std::vector<std::string> out;
    auto [begin, end] = headers.equal_range(name);
    for (auto it = begin; it != end; ++it) out.push_back(it->second);
    return out;
  }
};

inline bool write_all(tcp::socket& socket, std::string_view bytes) {
  beast::error_code ec;
  asio::write(socket, asio::buffer(bytes), ec);
  return !ec;
}

// A JSON response with its Content-Length; `extra_headers` are whole lines ending in CRLF.
inline bool write_whole(tcp::socket& socket, unsigned status, std::string_view body,
                        std::string_view extra_headers = "") {
  return write_all(socket, "HTTP/1.1 " + std::to_string(status) +
                               " X\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n" + std::string(extra_headers) +
                               "\r\n" + std::string(body));
}

// The head of a chunked event stream; write_chunk() sends its pieces, kLastChunk ends it.
constexpr std::string_view kEventStreamHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

inline bool write_chunk(tcp::socket& socket, std::string_view data) {
  std::ostringstream size;
  size << std::hex << data.size();
  return write_all(socket, size.str() + "\r\n" + std::string(data) + "\r\n");
}

// A provider on 127.0.0.1 that records every request, then lets the test's script answer it.
// Each connection has its own blocking thread, so a script may sleep, or hang until stopping(),
// without holding up the requests on other connections.
class ScriptedUpstream {
 public:
  // Answers `seen` on `socket`; false closes the connection.
  using Script = std::function<bool(tcp::socket& socket, const Seen& seen)>;

  explicit ScriptedUpstream(Script script)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        script_(std::move(script)) {
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~ScriptedUpstream() { stop(); }
  ScriptedUpstream(const ScriptedUpstream&) = delete;
  ScriptedUpstream& operator=(const ScriptedUpstream&) = delete;

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  std::vector<std::string> bodies() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const Seen& seen : seen_) out.push_back(seen.body);
    return out;
  }
  bool stopping() const { return stopping_; }

  // Shutting the sockets down wakes the threads blocked on them, so the joins cannot hang.
  void stop() {
    if (stopping_.exchange(true)) return;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    accept_thread_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : connection_threads_) t.join();
  }

 private:
  void accept_loop() {
    for (;;) {
      auto socket = std::make_unique<tcp::socket>(io_);
      beast::error_code ec;
      acceptor_.accept(*socket, ec);
      if (ec || stopping_) return;
      std::lock_guard lock(mutex_);
      open_fds_.push_back(socket->native_handle());
      connection_threads_.emplace_back(
          [this, s = std::move(socket)]() mutable { serve(std::move(*s)); });
    }
  }

  void serve(tcp::socket socket) {
    beast::flat_buffer buffer;
    for (;;) {
      bhttp::request<bhttp::string_body> request;
      beast::error_code ec;
      bhttp::read(socket, buffer, request, ec);
      if (ec) return;
      Seen seen{
          std::string(request.method_string()), std::string(request.target()), {}, request.body()};
      for (const auto& field : request) {
        seen.headers.emplace(lower(std::string(field.name_string())), std::string(field.value()));
      }
      {
        std::lock_guard lock(mutex_);
        seen_.push_back(seen);
      }
      if (!script_(socket, seen) || !request.keep_alive()) return;
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  const Script script_;
  std::thread accept_thread_;
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
  std::vector<int> open_fds_;
  std::vector<std::thread> connection_threads_;
  std::atomic<bool> stopping_{false};
};

// ---------------------------------------------------------------- the client

struct Reply {
  unsigned status = 0;
  std::multimap<std::string, std::string> headers;  // lower-cased names
  std::string body;
  std::string error;  // from try_call(): the transport failed, e.g. a response without its end

  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request on a new connection; throws when the transport fails, so a test can expect a cut
// stream. The gateway tells peers apart by address: `from` binds the client to another one.
inline Reply call(uint16_t port, bhttp::verb method, std::string_view target, std::string body,
                  const Headers& headers = {}, const char* from = nullptr) {
  asio::io_context io;
  tcp::socket socket(io);
  if (from) {
    socket.open(tcp::v4());
    socket.bind(tcp::endpoint(asio::ip::make_address(from), 0));
  }
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  bhttp::request<bhttp::string_body> request{method,
                                             beast::string_view(target.data(), target.size()), 11};
  request.set(bhttp::field::host, "gateway");
  for (const auto& [name, value] : headers) {
    request.insert(beast::string_view(name.data(), name.size()), value);
  }
  request.body() = std::move(body);
  request.prepare_payload();
  bhttp::write(socket, request);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  // Above the gateway's own caps, so that a response it passes on whole is read whole.
  parser.body_limit(64u << 20);
  if (method == bhttp::verb::head) parser.skip(true);
  bhttp::read(socket, buffer, parser);
  Reply reply;
  reply.status = parser.get().result_int();
  for (const auto& field : parser.get()) {
    reply.headers.emplace(lower(std::string(field.name_string())), std::string(field.value()));
  }
  reply.body = parser.get().body();
  return reply;
}

// call(), with a transport failure kept in Reply::error: a client on its own thread cannot fail
// the test by throwing, and a test can say which failure it expects.
inline Reply try_call(uint16_t port, bhttp::verb method, std::string_view target, std::string body,
                      const Headers& headers = {}) {
  try {
    return call(port, method, target, std::move(body), headers);
  } catch (const std::exception& e) {
    Reply reply;
    reply.error = e.what();
    return reply;
  }
}

// ---------------------------------------------------------------- the gateway

// A fresh directory under the temp dir with the gateway's SQLite request log in it, removed with
// everything in it on destruction. `prefix` names the directory, so leftovers are recognisable.
class ScratchStore {
 public:
  ScratchStore() = default;
  ~ScratchStore() {
    store_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  ScratchStore(const ScratchStore&) = delete;
  ScratchStore& operator=(const ScratchStore&) = delete;

  bool open(const std::string& prefix, std::string* error) {
    dir_ = std::filesystem::temp_directory_path() / (prefix + random_hex(8));
    std::filesystem::create_directories(dir_);
    store_ = open_sqlite_store((dir_ / "requests.db").string(), error);
    return store_ != nullptr;
  }

  const std::filesystem::path& dir() const { return dir_; }
  explicit operator bool() const { return store_ != nullptr; }
  Store& operator*() const { return *store_; }
  Store* operator->() const { return store_.get(); }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

// The record of the request `reply` answered. The gateway logs a request when its handler ends,
// which may be after the client has read the last byte, so this polls for up to `timeout`.
inline std::optional<RequestRecord> await_record(
    Store& store, const Reply& reply,
    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  constexpr std::chrono::milliseconds kPoll(10);
  const std::string id = reply.header("x-airlock-request-id");
  for (auto polls = timeout / kPoll; polls > 0; --polls) {
    std::string error;
    if (auto record = store.request(id, &error)) return record;
    std::this_thread::sleep_for(kPoll);
  }
  ADD_FAILURE() << "no record for request \"" << id << "\"";
  return std::nullopt;
}

// Waits until `store` holds `count` records (the gateway records a request when its handler
// ends, which for a cut stream is after the client saw its last byte); newest first.
inline std::vector<RequestRecord> await_records(Store& store, size_t count) {
  std::vector<RequestRecord> out;
  for (int i = 0; i < 2000; ++i) {
    std::string error;
    RequestQuery query;
    query.limit = 1000;
    out = store.requests(query, &error);
    EXPECT_TRUE(error.empty()) << error;
    if (out.size() >= count) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return out;
}

// A Gateway listening on 127.0.0.1 with its io_context run by `threads` threads of its own.
// `alice` is the peer at 127.0.0.1; every other address is unknown to the gateway.
class LoopbackGateway {
 public:
  LoopbackGateway() = default;
  ~LoopbackGateway() { stop(); }
  LoopbackGateway(const LoopbackGateway&) = delete;
  LoopbackGateway& operator=(const LoopbackGateway&) = delete;

  // Once per LoopbackGateway: stop() leaves the io_context stopped.
  bool start(const GatewayOptions& options, Store& store, const policy::Identity& alice,
             std::shared_ptr<const GatewayState> state, int threads, std::string* error) {
    auto peer = std::make_shared<const policy::PeerEntry>(
        policy::PeerEntry{alice, policy::encode_key_base64(alice.public_key)});
    IdentityLookup lookup = [peer](const asio::ip::address& remote) {
      return remote == asio::ip::make_address("127.0.0.1") ? peer : nullptr;
    };
    gateway_ = Gateway::create(io_, options, store, lookup, std::move(state), error);
    if (!gateway_) return false;
    if (!gateway_->listen(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), error)) {
      return false;
    }
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
    return true;
  }

  // Also run by the destructor; a second call does nothing.
  void stop() {
    if (gateway_) gateway_->stop();
    work_.reset();
    io_.stop();
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
    gateway_.reset();
  }

  // Stops as the control plane does at shutdown: what is still running is destroyed with its
  // handlers, not left to finish.
  void stop_and_drop_requests() {
    stop();
    io_.destroy_pending_handlers();
  }

  explicit operator bool() const { return gateway_ != nullptr; }
  Gateway* operator->() const { return gateway_.get(); }

 private:
  struct IoContext : asio::io_context {
    void destroy_pending_handlers() { shutdown(); }
  };

  IoContext io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  std::unique_ptr<Gateway> gateway_;
};

}  // namespace airlock::control::gateway::testing
