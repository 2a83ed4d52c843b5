#include "control/gateway/gateway.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "control/gateway/exchange.h"

namespace airlock::control::gateway {

namespace {

std::optional<Picodollars> price_field(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  return parse_per_million(*text);
}

}  // namespace

std::string new_request_id() {
  // The request log's primary key is this id. A random id lands each insert on a random page of
  // that index, so every group commit rewrote as many index pages as it held records; the
  // millisecond prefix makes inserts append to the index's last page.
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  // randombytes_buf draws from getrandom(2), a system call that took longer than the rest of
  // the id; drawing for 64 ids at once keeps the ids random at a 64th of the calls.
  constexpr std::size_t kRandomBytes = 6;
  constexpr std::size_t kIdsPerDraw = 64;
  thread_local std::array<unsigned char, kRandomBytes * kIdsPerDraw> pool;
  thread_local std::size_t used = pool.size();
  if (used == pool.size()) {
    randombytes_buf(pool.data(), pool.size());
    used = 0;
  }
  const std::span<unsigned char> bytes(pool.data() + used, kRandomBytes);
  used += kRandomBytes;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "req_";
  for (int shift = 44; shift >= 0; shift -= 4) {
    id.push_back(kHex[(static_cast<uint64_t>(now_ms) >> shift) & 0xf]);
  }
  for (unsigned char& b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 0xf]);
    b = 0;  // an id's bytes are not kept once it is drawn
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
    std::string url_error;
    std::optional<http::Url> url = http::Url::parse(provider.base_url, &url_error);
    if (!url) {
      if (error) *error = "provider \"" + provider.name + "\": base_url: " + url_error;
      return nullptr;
    }
    state->base_urls.emplace(provider.name, std::move(*url));
    if (!provider.key_ref) continue;
    std::string load_error;
    std::optional<Secret> key = load_secret(*provider.key_ref, &load_error);
    if (!key) {
      if (error) *error = "provider \"" + provider.name + "\": " + load_error;
      return nullptr;
    }
    state->keys.emplace(provider.name, std::move(*key));
  }
  if (!document->guardrails.empty()) {
    std::string compile_error;
    state->guardrails = guardrails::Guardrails::compile(document->guardrails, &compile_error);
    if (!state->guardrails) {
      if (error) *error = compile_error;
      return nullptr;
    }
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
  std::unique_ptr<http::UpstreamPool> pool = http::UpstreamPool::create(options.upstream, error);
  if (!pool) return nullptr;
  // A hook answers in well under a second or not at all; its own timeout_ms ends the wait, these
  // end the connection the wait left behind.
  http::UpstreamOptions hook_options = options.upstream;
  hook_options.connect_timeout = std::chrono::seconds(2);
  hook_options.first_byte_timeout = std::chrono::seconds(60);
  hook_options.idle_timeout = std::chrono::seconds(60);
  std::unique_ptr<http::UpstreamPool> hook_pool = http::UpstreamPool::create(hook_options, error);
  if (!hook_pool) return nullptr;
  std::unique_ptr<budget::Ledger> own_ledger;
  if (!options.services.ledger) {
    own_ledger = budget::Ledger::open("", error);
    if (!own_ledger) return nullptr;
  }
  auto core =
      std::make_shared<Core>(io, std::move(options), store, std::move(lookup), std::move(pool),
                             std::move(hook_pool), std::move(own_ledger), std::move(state));
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
    // The captured `core` belongs to the handler, which goes with the server; this copy lives
    // in the coroutine's frame.
    const std::shared_ptr<Core> held = core;  // NOLINT(performance-unnecessary-copy-initialization)
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
  if (!state || !state->document) return;
  if (core_->default_ledger) core_->default_ledger->set_budgets(state->document->budgets);
  core_->state.store(std::move(state));
}

void Gateway::stop() {
  for (const auto& server : servers_) server->stop();
  std::vector<std::function<void()>> asks;
  {
    std::lock_guard lock(core_->sockets_mutex);
    core_->stopping = true;
    for (const auto& [session, ask] : core_->sockets) asks.push_back(ask);
  }
  for (const auto& ask : asks) ask();
  core_->pool->stop_pooling();
  if (core_->hook_pool) core_->hook_pool->stop_pooling();
}

size_t Gateway::open_connections() const {
  size_t open = 0;
  for (const auto& server : servers_) open += server->open_connections();
  return open;
}

}  // namespace airlock::control::gateway
