// airlock-sim-upstream: a SIMULATED LLM provider on loopback for the demo, the end-to-end tests
// and the gateway benchmark. It speaks the OpenAI (Chat Completions, Responses, embeddings,
// models), Anthropic (Messages, count_tokens) and Gemini (generateContent,
// streamGenerateContent) wire formats of shared/research/protocols.md, never calls a real
// model, and says so in every answer.
//
// Deterministic accounting, so tests can assert exact numbers:
// - the request's prompt size T = ceil(request body bytes / 4);
// - cache reads: half of T (rounded down) when the request asks for caching (a top-level
//   `prompt_cache_key` or `cachedContent` member, or a `cache_control` member anywhere), else 0;
//   each provider then reports T in its own convention (OpenAI and Gemini prompt counts include
//   the cached part; Anthropic's input_tokens excludes it);
// - output = the number of whitespace-separated words produced: the reply text plus, when the
//   reply calls a tool, the arguments of that call;
// - reasoning/thinking = 0, cache writes = 0.
//
// Tool calls: when the request declares tools and does not end with a tool's result, the reply
// also carries one call to the first declared shell tool (Bash, exec_command, shell_command,
// shell, run_shell_command), or else to the first declared tool that has a name, with arguments
// {"command":"ls -la"} ({"command":["ls","-la"]} when the schema's `command` is an array,
// {"cmd":"ls -la"} when it has `cmd` but no `command`), streamed in fragments the way each
// provider does it.
//
// Behaviour is chosen by the model name (see Fault in responder.h): sim-error, sim-overloaded,
// sim-midstream-error, sim-slow, sim-hang, sim-big-event, sim-keepalive, sim-stall.
//
// The Responses API's WebSocket mode: GET /v1/responses with `Upgrade: websocket` opens a
// socket. Each text message {"type":"response.create", ...the members of a POST /v1/responses
// body} gets, one text message per event, the `data` of the events that POST with
// "stream":true would stream (comment lines dropped), counted on the body that POST would carry:
// the message without `type` and `stream_id`, with "stream":true, as compact JSON. An optional
// string `stream_id` names a lane: a lane answers its messages in order (a sim-hang or sim-stall
// turn holds it until the socket closes; sim-slow delays it), lanes run independently, and each
// message answered on a lane carries its "stream_id". A turn that fails before streaming, a
// message that is not a JSON object or not a response.create, and a binary message get one
// {"type":"error","status":<HTTP status>,"error":<the HTTP error body's error object>}; the
// socket stays open. Upgrades to other paths are answered as plain requests (404).
//
// Every request outside /_sim/ is recorded, and every WebSocket message (see recorder.h);
// GET /_sim/requests lists them and DELETE /_sim/requests forgets them. Unknown paths get a 404
// in the OpenAI error shape.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace airlock::control::sim {

struct Options {
  std::string address = "127.0.0.1";
  uint16_t port = 18080;  // 0 picks a free port (see Server::port())
  // Both set: serve HTTPS with this certificate chain and private key (PEM files).
  std::string tls_cert_file;
  std::string tls_key_file;
  unsigned threads = 1;
  // How long "sim-slow" waits before its headers (on a WebSocket, before its first event).
  std::chrono::milliseconds slow{2000};
  std::size_t record_limit = 1000;  // recorded requests kept; the oldest go first
  bool quiet = false;               // no log line per request
};

// The command line of airlock-sim-upstream (argv without the program name). Returns nullopt and
// sets `error` on a bad option; `help` is set for --help.
std::optional<Options> parse_options(std::span<const char* const> args, std::string& error,
                                     bool& help);
extern const char* const kUsage;

class Server {
 public:
  // Binds the listening socket (and loads the TLS files). Throws std::runtime_error on failure;
  // the message never contains key material.
  explicit Server(const Options& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& address() const;
  uint16_t port() const;

  // Serves on `threads` background threads until stop().
  void start();
  // Stops serving and joins the threads; open connections are dropped. Idempotent; must not be
  // called from a serving thread.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::control::sim
