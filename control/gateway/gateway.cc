#include "control/gateway/gateway.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <utility>

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

#include "control/gateway/api.h"
#include "control/gateway/errors.h"
#include "control/gateway/headers.h"
#include "control/gateway/models.h"
#include "control/gateway/relay.h"
#include "control/gateway/request_body.h"
#include "control/metering/usage.h"

namespace airlock::control::gateway {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

struct Gateway::Core {
  Core(asio::io_context& io_context, GatewayOptions gateway_options, Store& request_store,
       IdentityLookup identity_lookup, std::unique_ptr<http::UpstreamPool> upstream_pool,
       std::shared_ptr<const GatewayState> initial_state)
      : io(io_context),
        options(std::move(gateway_options)),
        store(request_store),
        lookup(std::move(identity_lookup)),
        pool(std::move(upstream_pool)),
        state(std::move(initial_state)) {}

  asio::io_context& io;
  const GatewayOptions options;
  Store& store;
  const IdentityLookup lookup;
  const std::unique_ptr<http::UpstreamPool> pool;
  std::atomic<std::shared_ptr<const GatewayState>> state;
};

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// Redaction scans a little past the body cap, so a key straddling the cut is still found and a
// prefix of it cannot survive the truncation.
constexpr std::size_t kRedactSlack = 4096;
// Provider error bodies are a few hundred bytes; past this the body is no error message.
constexpr std::size_t kMaxHeldErrorBody = 1u << 20;

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

bool istarts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         boost::beast::iequals(boost::beast::string_view(text.data(), prefix.size()),
                               boost::beast::string_view(prefix.data(), prefix.size()));
}

int64_t micros_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The data plane reports IPv4 peers as IPv4; a dual-stack listener sees them as ::ffff:a.b.c.d.
asio::ip::address normalized(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address;
}

// What the gateway routes on. Only `model` and `stream` are kept from the top level; everything
// else (messages, tools, images) is syntax-checked and dropped as it is parsed, so a 30 MB body
// does not become a 30 MB document tree.
struct BodyFields {
  bool valid_json = false;
  std::string model;
  bool stream = false;
};

BodyFields inspect_body(std::string_view body) {
  const json::parser_callback_t keep = [](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) {
      return parsed == "model" || parsed == "stream";
    }
    return true;
  };
  const json j = json::parse(body.begin(), body.end(), keep, false);
  BodyFields out;
  out.valid_json = !j.is_discarded();
  if (!j.is_object()) return out;
  if (const auto it = j.find("model"); it != j.end() && it->is_string()) {
    out.model = it->get<std::string>();
  }
  if (const auto it = j.find("stream"); it != j.end() && it->is_boolean()) {
    out.stream = it->get<bool>();
  }
  return out;
}

// Appends the record when the request ends, however it ends: normal return, exception, or the
// coroutine frame being destroyed with the io_context.
class RecordGuard {
 public:
  explicit RecordGuard(Store& store) : store_(store), start_(Clock::now()) {}
  ~RecordGuard() {
    try {
      record.duration_us = micros_since(start_);
      store_.append(std::move(record));
    } catch (...) {
      // Store::append does not fail by contract; a destructor must not throw regardless.
    }
  }
  RecordGuard(const RecordGuard&) = delete;
  RecordGuard& operator=(const RecordGuard&) = delete;

  void first_byte() {
    if (record.ttfb_us < 0) record.ttfb_us = micros_since(start_);
  }

  RequestRecord record;

 private:
  Store& store_;
  const Clock::time_point start_;
};

// One request, from routing to the record.
class Exchange {
 public:
  Exchange(Gateway::Core& core, http::Request& request, http::BodyStatus body_status,
           const http::ClientInfo& client, http::ResponseWriter& writer)
      : core_(core),
        state_(core.state.load()),
        request_(request),
        body_status_(body_status),
        client_(client),
        writer_(writer),
        guard_(core.store),
        record_(guard_.record) {
    for (const auto& [name, key] : state_->keys) secrets_.push_back(&key);
  }

  asio::awaitable<void> run();

  void fail(std::string_view what) {
    record_.error = redact("internal error: " + std::string(what), secrets_);
  }

 private:
  const policy::Document& document() const { return *state_->document; }

  asio::awaitable<void> refuse(GatewayError error, std::string message);
  asio::awaitable<void> respond(int status, std::string body);
  asio::awaitable<void> list_models(const policy::Identity& identity);
  asio::awaitable<void> forward(const policy::ProviderSpec& provider, std::string body,
                                bool strip_usage);
  void finish_record(const policy::ProviderSpec& provider, const Relay& relay,
                     const http::UpstreamResult& result, bool client_gone);
  std::optional<std::string> loggable(std::string_view body) const;
  http::ResponseHeader redacted(const http::ResponseHeader& header) const;

  Gateway::Core& core_;
  const std::shared_ptr<const GatewayState> state_;
  http::Request& request_;
  const http::BodyStatus body_status_;
  const http::ClientInfo& client_;
  http::ResponseWriter& writer_;
  RecordGuard guard_;
  RequestRecord& record_;
  std::vector<const Secret*> secrets_;
  ApiRoute route_;
  ErrorFormat format_ = ErrorFormat::kOpenAi;
};

asio::awaitable<void> Exchange::run() {
  record_.id = new_request_id();
  record_.time_ms = now_unix_ms();
  route_ = classify(request_.method(), sv(request_.target()));
  record_.api = std::string(api_name(route_.kind));
  format_ = error_format(route_.kind, wants_anthropic_list(request_));

  const asio::ip::address remote = normalized(client_.remote_address);
  const std::optional<policy::Identity> identity = core_.lookup(remote);
  if (!identity) {
    co_return co_await refuse(GatewayError::kUnknownPeer,
                              "unknown peer: " + remote.to_string() +
                                  " is not the address of a WireGuard peer of this gateway");
  }
  record_.user = identity->user;
  record_.device = identity->device;
  record_.tags = identity->tags;
  record_.groups = identity->groups;
  record_.peer_key = policy::encode_key_base64(identity->public_key);

  if (body_status_ == http::BodyStatus::kTooLarge) {
    co_return co_await refuse(GatewayError::kBodyTooLarge,
                              "request body exceeds the gateway's limit of " +
                                  std::to_string(core_.options.server.max_body_bytes) + " bytes");
  }
  if (route_.kind == ApiKind::kUnknown) {
    const std::string_view target = sv(request_.target());
    co_return co_await refuse(GatewayError::kUnknownRoute,
                              "no API at " + std::string(sv(request_.method_string())) + " " +
                                  std::string(target.substr(0, target.find('?'))));
  }
  if (route_.kind == ApiKind::kModels) co_return co_await list_models(*identity);

  DecodedBody decoded =
      decode_request_body(sv(request_[bhttp::field::content_encoding]), std::move(request_.body()),
                          core_.options.server.max_body_bytes);
  switch (decoded.status) {
    case DecodedBody::Status::kOk:
      break;
    case DecodedBody::Status::kUnsupported:
      co_return co_await refuse(GatewayError::kUnsupportedEncoding, decoded.error);
    case DecodedBody::Status::kCorrupt:
      co_return co_await refuse(GatewayError::kBadEncoding, decoded.error);
    case DecodedBody::Status::kTooLarge:
      co_return co_await refuse(GatewayError::kBodyTooLarge, decoded.error);
  }
  std::string body = std::move(decoded.body);
  record_.request_body = loggable(body);

  const BodyFields fields = inspect_body(body);
  if (!fields.valid_json) {
    co_return co_await refuse(GatewayError::kBadJson, "request body is not valid JSON");
  }
  const bool gemini =
      route_.kind == ApiKind::kGeminiGenerate || route_.kind == ApiKind::kGeminiStream;
  const std::string model = gemini ? route_.model : fields.model;
  if (model.empty()) {
    co_return co_await refuse(GatewayError::kMissingModel, "request body has no \"model\" string");
  }
  record_.model = model;
  record_.streamed = fields.stream || route_.kind == ApiKind::kGeminiStream;

  const policy::ProviderSpec* provider = document().provider_for_model(model);
  if (provider == nullptr) {
    co_return co_await refuse(GatewayError::kUnknownModel,
                              "model \"" + model + "\" is not served by any provider");
  }
  record_.provider = provider->name;
  if (!provider_speaks(provider->kind, route_.kind)) {
    co_return co_await refuse(GatewayError::kWrongApi,
                              "model \"" + model + "\" is served by provider \"" + provider->name +
                                  "\" (" + std::string(policy::provider_kind_name(provider->kind)) +
                                  "), which does not serve " + std::string(api_name(route_.kind)));
  }
  if (!document().model_granted(*identity, provider->name, model)) {
    co_return co_await refuse(GatewayError::kNotGranted,
                              "model \"" + provider->name + "/" + model +
                                  "\" is not granted to this peer (user \"" + identity->user +
                                  "\")");
  }

  const bool strip_usage =
      route_.kind == ApiKind::kOpenAiChat && fields.stream && wants_usage_injection(body);
  if (strip_usage) body = inject_include_usage(body);
  co_await forward(*provider, std::move(body), strip_usage);
}

asio::awaitable<void> Exchange::respond(int status, std::string body) {
  http::Response response{static_cast<bhttp::status>(status), request_.version()};
  response.set(bhttp::field::content_type, "application/json");
  response.set("x-airlock-request-id", record_.id);
  response.body() = std::move(body);
  record_.status = status;
  if (co_await writer_.write(std::move(response))) {
    guard_.first_byte();
  } else {
    record_.client_disconnected = true;
  }
}

asio::awaitable<void> Exchange::refuse(GatewayError error, std::string message) {
  record_.error = message;
  record_.cost = 0;  // nothing reached a provider
  std::string body = error_body(format_, error, message);
  record_.response_body = loggable(body);
  co_await respond(error_status(error), std::move(body));
}

asio::awaitable<void> Exchange::list_models(const policy::Identity& identity) {
  const std::vector<GrantedModel> models = granted_models(document(), identity);
  std::string body = wants_anthropic_list(request_)
                         ? anthropic_models_body(models, state_->loaded_unix_s)
                         : openai_models_body(models, state_->loaded_unix_s);
  record_.cost = 0;
  record_.usage_complete = true;
  record_.response_body = loggable(body);
  co_await respond(200, std::move(body));
}

std::optional<std::string> Exchange::loggable(std::string_view body) const {
  const policy::RequestLogSpec& spec = document().request_log;
  if (!spec.bodies) return std::nullopt;
  const std::size_t cap = static_cast<std::size_t>(spec.max_body_bytes);
  std::string out = redact(body.substr(0, cap + kRedactSlack), secrets_);
  if (out.size() > cap) out.resize(cap);
  return out;
}

http::ResponseHeader Exchange::redacted(const http::ResponseHeader& header) const {
  http::ResponseHeader out;
  out.version(header.version());
  out.result(header.result_int());
  out.reason(header.reason());
  for (const auto& field : header) {
    const std::string value = redact(sv(field.value()), secrets_);
    out.insert(field.name_string(), boost::beast::string_view(value.data(), value.size()));
  }
  return out;
}

asio::awaitable<void> Exchange::forward(const policy::ProviderSpec& provider, std::string body,
                                        bool strip_usage) {
  std::string url_error;
  const std::optional<http::Url> url = http::Url::parse(provider.base_url, &url_error);
  if (!url) {
    co_return co_await refuse(GatewayError::kUpstreamFailed,
                              "provider \"" + provider.name + "\" has an unusable base_url");
  }
  std::optional<std::string_view> key;
  if (const auto it = state_->keys.find(provider.name); it != state_->keys.end()) {
    key = it->second.reveal();
  }

  http::Request upstream;
  upstream.method(request_.method());
  upstream.target(upstream_target(route_, url->base_path, !provider.passthrough));
  upstream.version(11);
  for (const auto& field : upstream_request_fields(request_, provider, key)) {
    upstream.insert(field.name_string(), field.value());
  }
  upstream.body() = std::move(body);

  const Api api = *meter_api(route_.kind);
  const bool log_bodies = document().request_log.bodies;
  const std::size_t log_cap =
      static_cast<std::size_t>(document().request_log.max_body_bytes) + kRedactSlack;
  std::optional<Relay> relay;
  std::string to_client;
  std::string response_copy;
  bool client_gone = false;
  // An error answer is small, so it is held whole and sent with the provider keys redacted:
  // some upstreams quote the credential they rejected, and the sandbox must never see it.
  bool hold = false;
  std::string held;

  const auto send = [&](std::string_view bytes) -> asio::awaitable<bool> {
    if (bytes.empty()) co_return true;
    if (log_bodies && response_copy.size() < log_cap) {
      response_copy.append(bytes.substr(0, log_cap - response_copy.size()));
    }
    if (!co_await writer_.chunk(bytes)) {
      client_gone = true;
      co_return false;
    }
    co_return true;
  };
  const auto pass = [&](std::string_view bytes, bool last) -> asio::awaitable<bool> {
    if (!hold) co_return co_await send(bytes);
    held.append(bytes);
    if (!last && held.size() <= kMaxHeldErrorBody) co_return true;
    hold = false;
    const std::string clean = redact(held, secrets_);
    held.clear();
    co_return co_await send(clean);
  };

  const http::OnHeaders on_headers =
      [&](const http::ResponseHeader& header) -> asio::awaitable<bool> {
    record_.status = static_cast<int>(header.result_int());
    const bool sse = istarts_with(sv(header[bhttp::field::content_type]), "text/event-stream");
    relay.emplace(RelayOptions{api, sse, strip_usage && sse});
    hold = record_.status / 100 != 2;
    http::ResponseHeader out = redacted(header);
    prepare_client_header(out, (strip_usage && sse) || hold);
    out.set("x-airlock-request-id", record_.id);
    if (!co_await writer_.start(std::move(out))) {
      client_gone = true;
      co_return false;
    }
    guard_.first_byte();
    co_return true;
  };
  const http::OnBody on_body = [&](std::string_view data) -> asio::awaitable<bool> {
    to_client.clear();
    relay->feed(data, to_client);
    co_return co_await pass(to_client, false);
  };

  const http::UpstreamResult result =
      co_await core_.pool->send(*url, std::move(upstream), on_headers, on_body);

  if (!result.headers_received) {
    using Error = http::UpstreamResult::Error;
    const bool timeout =
        result.error == Error::kConnectTimeout || result.error == Error::kFirstByteTimeout;
    const GatewayError error =
        timeout ? GatewayError::kUpstreamTimeout : GatewayError::kUpstreamFailed;
    std::string message =
        "upstream \"" + provider.name + "\" " + (timeout ? "timed out" : "failed") + " (" +
        std::string(http::upstream_error_name(result.error)) + "): " + result.message;
    co_return co_await refuse(error, redact(message, secrets_));
  }

  to_client.clear();
  relay->finish(to_client);
  if (!client_gone) co_await pass(to_client, true);
  // A transport failure after the header leaves the response unfinished: the server then
  // closes the connection without the final chunk, so the client sees a truncated body.
  if (result.error == http::UpstreamResult::Error::kNone && !client_gone) {
    if (!co_await writer_.finish()) client_gone = true;
  }
  if (log_bodies) record_.response_body = loggable(response_copy);
  finish_record(provider, *relay, result, client_gone);
}

void Exchange::finish_record(const policy::ProviderSpec& provider, const Relay& relay,
                             const http::UpstreamResult& result, bool client_gone) {
  const bool transport_ok = result.error == http::UpstreamResult::Error::kNone && !client_gone;
  const bool success = record_.status >= 200 && record_.status < 300;
  record_.client_disconnected = client_gone;

  std::string error;
  if (!transport_ok && !client_gone) {
    error = "upstream \"" + provider.name + "\" " +
            std::string(http::upstream_error_name(result.error)) + ": " + result.message;
  } else if (!success) {
    error = "upstream status " + std::to_string(record_.status);
    if (relay.error()) error += ": " + *relay.error();
  } else if (relay.error()) {
    error = *relay.error();
  } else if (relay.metering_error()) {
    error = "metering: " + *relay.metering_error();
  }
  record_.error = redact(error, secrets_);

  record_.tool_calls = relay.tool_calls();
  // Counting tokens is free and its answer is not usage.
  const Usage usage = route_.kind == ApiKind::kAnthropicCountTokens ? Usage{} : relay.usage();
  record_.input_tokens = usage.input;
  record_.output_tokens = usage.output;
  record_.cache_read_tokens = usage.cache_read;
  record_.cache_write_tokens = usage.cache_write;
  record_.reasoning_tokens = usage.reasoning;
  record_.usage_complete = route_.kind == ApiKind::kAnthropicCountTokens
                               ? transport_ok && success
                               : transport_ok && usage.complete;

  std::optional<Price> price = state_->prices.find(provider.kind, record_.model);
  if (!price && !usage.model.empty()) price = state_->prices.find(provider.kind, usage.model);
  record_.cost = price ? std::optional<Picodollars>(cost_of(*price, usage)) : std::nullopt;
}

std::optional<Picodollars> price_field(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  return parse_per_million(*text);
}

}  // namespace

std::string new_request_id() {
  // randombytes_buf draws from getrandom(2); sodium_init() (called by Gateway::create) only
  // makes the first call cheaper.
  std::array<unsigned char, 12> bytes;
  randombytes_buf(bytes.data(), bytes.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "req_";
  for (const unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 0xf]);
  }
  return id;
}

std::shared_ptr<const GatewayState> make_gateway_state(
    std::shared_ptr<const policy::Document> document, const PriceTable& base_prices,
    std::string* error) {
  auto state = std::make_shared<GatewayState>();
  state->prices = base_prices;
  state->loaded_unix_s = now_unix_ms() / 1000;
  for (const policy::PriceOverride& o : document->prices) {
    const auto provider =
        std::find_if(document->providers.begin(), document->providers.end(),
                     [&](const policy::ProviderSpec& p) { return p.name == o.provider; });
    const std::string where = "price \"" + o.provider + "/" + o.model + "\"";
    if (provider == document->providers.end()) {
      if (error) *error = where + ": no provider \"" + o.provider + "\"";
      return nullptr;
    }
    const std::optional<Picodollars> input = parse_per_million(o.input);
    const std::optional<Picodollars> output = parse_per_million(o.output);
    Price price;
    price.cache_read = price_field(o.cache_read);
    price.cache_write = price_field(o.cache_write);
    price.cache_write_1h = price_field(o.cache_write_1h);
    if (!input || !output || (o.cache_read && !price.cache_read) ||
        (o.cache_write && !price.cache_write) || (o.cache_write_1h && !price.cache_write_1h)) {
      if (error) *error = where + ": a price is not a dollar amount per million tokens";
      return nullptr;
    }
    price.input = *input;
    price.output = *output;
    state->prices.set(provider->kind, o.model, price);
  }
  for (const policy::ProviderSpec& provider : document->providers) {
    if (!provider.key_ref) continue;
    std::string load_error;
    std::optional<Secret> key = load_secret(*provider.key_ref, &load_error);
    if (!key) {
      if (error) *error = "provider \"" + provider.name + "\": " + load_error;
      return nullptr;
    }
    state->keys.emplace(provider.name, std::move(*key));
  }
  state->document = std::move(document);
  return state;
}

std::unique_ptr<Gateway> Gateway::create(asio::io_context& io, GatewayOptions options, Store& store,
                                         IdentityLookup lookup,
                                         std::shared_ptr<const GatewayState> state,
                                         std::string* error) {
  if (!state || !state->document) {
    if (error) *error = "gateway: no policy state";
    return nullptr;
  }
  if (sodium_init() < 0) {
    if (error) *error = "gateway: libsodium failed to initialise";
    return nullptr;
  }
  std::unique_ptr<http::UpstreamPool> pool =
      http::UpstreamPool::create(io, options.upstream, error);
  if (!pool) return nullptr;
  auto core = std::make_shared<Core>(io, std::move(options), store, std::move(lookup),
                                     std::move(pool), std::move(state));
  return std::unique_ptr<Gateway>(new Gateway(std::move(core)));
}

Gateway::Gateway(std::shared_ptr<Core> core) : core_(std::move(core)) {}

Gateway::~Gateway() {
  stop();
}

bool Gateway::listen(const asio::ip::tcp::endpoint& endpoint, std::string* error) {
  // Each request holds the core, so a request still running when the Gateway is destroyed keeps
  // the pool and the lookup it uses alive.
  http::Handler handler = [core = core_](http::Request& request, http::BodyStatus body_status,
                                         const http::ClientInfo& client,
                                         http::ResponseWriter& writer) -> asio::awaitable<void> {
    const std::shared_ptr<Core> held = core;
    Exchange exchange(*held, request, body_status, client, writer);
    try {
      co_await exchange.run();
    } catch (const std::exception& e) {
      exchange.fail(e.what());
      throw;
    }
  };
  std::unique_ptr<http::Server> server =
      http::Server::listen(core_->io, endpoint, core_->options.server, std::move(handler), error);
  if (!server) return false;
  servers_.push_back(std::move(server));
  return true;
}

uint16_t Gateway::port() const {
  return servers_.empty() ? 0 : servers_.front()->port();
}

void Gateway::set_state(std::shared_ptr<const GatewayState> state) {
  if (state && state->document) core_->state.store(std::move(state));
}

void Gateway::stop() {
  for (const auto& server : servers_) server->stop();
}

}  // namespace airlock::control::gateway
