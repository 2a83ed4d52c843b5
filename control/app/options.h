// Command line of airlock-control.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "policy/policy.h"

namespace airlock::control {

struct ControlOptions {
  std::string policy_file;             // the policy's JSON; accepted pushes are saved back here
  std::vector<std::string> instances;  // data planes to push to and take punted flows from
  bool no_dataplane = false;           // gateway only (benchmarks, development)
  std::string db_path = "/var/lib/airlock/requests.db";
  std::string tun_name = "airlock0";
  uint16_t gateway_port = 80;  // on every gateway address of the policy
  std::vector<boost::asio::ip::tcp::endpoint> extra_listen;
  boost::asio::ip::tcp::endpoint admin_listen{boost::asio::ip::make_address("127.0.0.1"), 9190};
  std::string hub_endpoint;         // what sandboxes dial, for `airlockctl peer add`
  std::string hub_public_key_file;  // the data plane's public key (base64), same purpose
  std::string prices_file;          // LiteLLM-format price JSON merged over the built-in table
  std::string upstream_ca;          // extra trust anchors for provider TLS
  // Connections from loopback are attributed to this policy peer. For benchmarks and local
  // development only: it bypasses the tunnel, which is what proves identity.
  std::optional<policy::Key> local_peer;
  unsigned threads = 2;
  // On SIGTERM or SIGINT the gateway stops accepting and gives the requests and WebSocket turns
  // in flight this long to end before it cuts them (and records each as cut). A second signal
  // cuts at once.
  unsigned drain_seconds = 10;
  // Finished webhook events and delivery-log rows older than this are deleted; 0 keeps them.
  unsigned event_retention_days = 30;
};

std::optional<ControlOptions> parse_control_options(std::span<char* const> args,
                                                    std::string* error);
std::string control_usage();

}  // namespace airlock::control
