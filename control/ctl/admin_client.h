// airlockctl's client for the admin API: one plain-HTTP request per connection, synchronous for
// the caller, with an overall deadline so a stuck server cannot hang the command line.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace airlock::control::ctl {

struct AdminResponse {
  unsigned status = 0;
  std::string body;
};

class AdminClient {
 public:
  // "http://127.0.0.1:9190" or "http://localhost:9190/prefix"; nullopt with *error otherwise.
  static std::optional<AdminClient> create(std::string_view url, std::string* error);

  // nullopt with *error when the server cannot be reached or does not answer in time.
  std::optional<AdminResponse> get(std::string_view target, std::string* error) const;
  std::optional<AdminResponse> post(std::string_view target, std::string body,
                                    std::string* error) const;

  const std::string& url() const { return url_; }

 private:
  std::optional<AdminResponse> request(bool post, std::string_view target, std::string body,
                                       std::string* error) const;

  std::string url_;
  std::string host_;
  std::string port_;
  std::string base_path_;
  // Long enough for a policy push that waits on several data planes.
  std::chrono::seconds timeout_{120};
};

// Query-string escaping of one name or value.
std::string percent_encode(std::string_view text);

}  // namespace airlock::control::ctl
