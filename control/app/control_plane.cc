#include "control/app/control_plane.h"

#include <pthread.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "control/admin/admin_api.h"
#include "control/admin/policy_manager.h"
#include "control/app/identity.h"
#include "control/budget/ledger.h"
#include "control/budget/rate_limit.h"
#include "control/events/event.h"
#include "control/events/outbox.h"
#include "control/gateway/gateway.h"
#include "control/metrics/gateway_metrics.h"
#include "control/metrics/registry.h"
#include "control/metrics/scrape.h"
#include "control/prices/prices.h"
#include "control/store/store.h"
#include "control/tun/ring_tun.h"
#include "control/tun/tun_device.h"
#include "dataplane/stats.h"

namespace airlock::control {
namespace {

namespace asio = boost::asio;
using gateway::Gateway;
using gateway::GatewayOptions;
using gateway::IdentityLookup;
using gateway::make_gateway_state;

// The largest inner packet the data plane carries (its default --mtu); the kernel's TCP sizes
// segments to it, so every reply fits a ring slot and the peer's tunnel.
constexpr uint32_t kTunMtu = 1420;
// The kernel queues packets routed out of the TUN until the pump reads them, and drops past this
// length. The default (500) overflowed during a bulk download in bench_tcp_termination (11.6k
// drops and as many retransmits in 186k packets); 4096 packets is about 6 MB of 1420 B segments.
constexpr uint32_t kTunTxQueueLen = 4096;
// Channels per data plane: one per worker, "<instance>-ring-<n>"; probing stops at the first gap.
constexpr int kMaxChannels = 64;

void log(const std::string& line) {
  std::fprintf(stderr, "airlock-control: %s\n", line.c_str());
}

std::optional<std::string> read_text(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path;
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// An io_context whose pending handlers can be destroyed before the context itself. Handlers of
// one context hold objects of another: the gateway's accept loop on the main context holds the
// socket, and with it a strand, of the connection context it hands the next connection to, and a
// connection holds its server's acceptor on the main context. Destroying one context while
// another still holds such handlers frees memory they then use, so every context drops its
// handlers while all of them still exist.
class IoContext final : public asio::io_context {
 public:
  using asio::io_context::io_context;
  void destroy_pending_handlers() { shutdown(); }
};

std::optional<IpPrefix> to_tun_prefix(const policy::IpPrefix& prefix) {
  return IpPrefix::parse(policy::format_prefix(prefix));
}

class ControlPlaneImpl final : public ControlPlane {
 public:
  explicit ControlPlaneImpl(const ControlOptions& options) : options_(options) {}

  ~ControlPlaneImpl() override { shutdown(); }

  bool start(std::string* error) {
    return start_policy(error) && start_store(error) && start_prices(error) &&
           start_spend_and_events(error) && start_punt_path(error) && start_gateway(error) &&
           start_admin(error);
  }

  void run() override {
    signals_.emplace(io_, SIGINT, SIGTERM);
    await_signal();
    std::vector<std::thread> io_threads;
    for (auto& context : connection_contexts_) {
      // Named so that top -H and perf tell the threads apart (15 characters at most).
      const std::string name = "airlock-io-" + std::to_string(io_threads.size() + 1);
      io_threads.emplace_back([&context, name] {
        pthread_setname_np(pthread_self(), name.c_str());
        context->run();
      });
    }
    io_.run();
    for (auto& context : connection_contexts_) context->stop();
    for (std::thread& t : io_threads) t.join();
    shutdown();
    log("stopped");
  }

 private:
  bool start_policy(std::string* error) {
    admin::PolicyManagerOptions pm_options;
    pm_options.policy_path = options_.policy_file;
    for (const std::string& instance : options_.instances) {
      pm_options.data_planes.push_back({instance, admin::control_socket_path(instance)});
    }
    policies_ = std::make_unique<admin::PolicyManager>(std::move(pm_options));
    if (!policies_->load(error)) return false;
    if (!policies_->active()) {
      *error = "no policy in " + options_.policy_file;
      return false;
    }
    for (const std::string& message : policies_->ensure_pushed()) log(message);
    return true;
  }

  bool start_store(std::string* error) {
    const std::filesystem::path db(options_.db_path);
    if (db.has_parent_path()) {
      std::error_code ec;
      std::filesystem::create_directories(db.parent_path(), ec);
    }
    store_ = open_sqlite_store(options_.db_path, error);
    return store_ != nullptr;
  }

  // Budget balances and the webhook outbox live beside the request log, each in its own SQLite
  // file so neither writer waits on the other's lock.
  bool start_spend_and_events(std::string* error) {
    const std::filesystem::path dir = std::filesystem::path(options_.db_path).parent_path();
    ledger_ = budget::Ledger::open((dir / "budgets.db").string(), error);
    if (!ledger_) return false;
    events::OutboxOptions outbox_options;
    outbox_options.retention = std::chrono::days(options_.event_retention_days);
    outbox_ = events::Outbox::open((dir / "events.db").string(), error, outbox_options);
    if (!outbox_) return false;
    const auto document = policies_->active()->document;
    ledger_->set_budgets(document->budgets);
    if (!apply_webhooks(*document, error)) return false;
    ledger_->set_event_handler([outbox = outbox_.get()](const budget::ThresholdEvent& event) {
      outbox->publish(budget_event(event));
    });
    gateway_metrics_ = std::make_unique<metrics::GatewayMetrics>(registry_);
    return true;
  }

  bool apply_webhooks(const policy::Document& document, std::string* error) {
    auto subscriptions = events::load_subscriptions(document.webhooks, error);
    return subscriptions && outbox_->set_webhooks(std::move(*subscriptions), error);
  }

  static events::Event budget_event(const budget::ThresholdEvent& event) {
    const bool exceeded = event.kind == budget::ThresholdEvent::Kind::kExceeded;
    nlohmann::json data = {{"budget", event.budget},
                           {"key", event.balance_key.substr(event.balance_key.find('|') + 1)},
                           {"percent", event.percent},
                           {"spent_usd", static_cast<double>(event.spent_usd) / 1e12},
                           {"spent_tokens", event.spent_tokens}};
    data["limit_usd"] = event.limit_usd
                            ? nlohmann::json(static_cast<double>(*event.limit_usd) / 1e12)
                            : nlohmann::json(nullptr);
    data["limit_tokens"] =
        event.limit_tokens ? nlohmann::json(*event.limit_tokens) : nlohmann::json(nullptr);
    return events::make_event(exceeded ? events::kBudgetExceeded : events::kBudgetThreshold,
                              data.dump());
  }

  bool start_prices(std::string* error) {
    base_prices_ = PriceTable::builtin();
    if (options_.prices_file.empty()) return true;
    const auto text = read_text(options_.prices_file, error);
    if (!text) return false;
    const auto taken = base_prices_.import_litellm(*text, error);
    if (!taken) {
      *error = options_.prices_file + ": " + *error;
      return false;
    }
    log("prices: " + std::to_string(*taken) + " entries from " + options_.prices_file);
    return true;
  }

  // One TUN queue per data-plane channel, so each channel has its own pump thread and the
  // kernel spreads reply flows across them.
  bool start_punt_path(std::string* error) {
    if (options_.no_dataplane) return true;
    std::vector<PuntSource> sources;
    for (const std::string& instance : options_.instances) {
      auto stats = dp::StatsReader::open(instance + "-stats", error);
      if (!stats) {
        *error = "data plane " + instance + " (is it running?): " + *error;
        return false;
      }
      stats_.push_back(std::make_unique<dp::StatsReader>(std::move(*stats)));
      for (int n = 0; n < kMaxChannels; ++n) {
        auto tun = TunDevice::open(options_.tun_name, error, /*multi_queue=*/true);
        if (!tun) return false;
        std::string attach_error;
        auto ring = RingTun::attach(instance + "-ring-" + std::to_string(n), std::move(*tun),
                                    RingTunOptions{}, &attach_error);
        if (!ring) {
          if (n > 0) break;
          *error = "data plane " + instance;
          *error += ": " + attach_error;
          return false;
        }
        sources.push_back({ring.get(), stats_.back().get()});
        rings_.push_back(std::move(ring));
      }
    }
    TunDevice& tun = rings_.front()->tun();
    if (!tun.set_mtu(kTunMtu, error) || !tun.set_tx_queue_len(kTunTxQueueLen, error) ||
        !tun.set_up(error) || !configure_addresses(*policies_->active()->document, error)) {
      return false;
    }
    resolver_ = std::make_unique<IdentityResolver>(std::move(sources), options_.local_peer);
    for (auto& ring : rings_) {
      const std::string name = "airlock-pump-" + std::to_string(pumps_.size());
      pumps_.emplace_back([this, r = ring.get(), name] {
        pthread_setname_np(pthread_self(), name.c_str());
        r->run(stop_pumps_);
      });
    }
    log("punt path: " + std::to_string(rings_.size()) + " channel(s) on " + options_.tun_name);
    return true;
  }

  // The gateway addresses live on the TUN; every peer's allowed IPs route back into it (the data
  // plane drops a reply to an address the destination peer does not own).
  bool configure_addresses(const policy::Document& document, std::string* error) {
    TunDevice& tun = rings_.front()->tun();
    for (const policy::IpPrefix& gateway : document.gateway) {
      const auto prefix = to_tun_prefix(gateway);
      if (!prefix || !tun.add_address(*prefix, error)) return false;
    }
    for (const policy::PeerSpec& peer : document.peers) {
      for (const policy::PrefixSpec& spec : peer.allowed_ips) {
        const auto* text = std::get_if<std::string>(&spec);
        const auto prefix = text ? IpPrefix::parse(*text) : std::nullopt;
        if (!prefix || !tun.add_route(*prefix, error)) return false;
      }
    }
    return true;
  }

  bool start_gateway(std::string* error) {
    if (!resolver_)
      resolver_ =
          std::make_unique<IdentityResolver>(std::vector<PuntSource>{}, options_.local_peer);
    const auto active = policies_->active();
    auto state = make_gateway_state(active->document, base_prices_, error);
    if (!state) return false;
    GatewayOptions gateway_options;
    gateway_options.upstream.ca_file = options_.upstream_ca;
    // Gateway connections are spread over the main io_context and one more per extra thread.
    gateway_options.server.connection_contexts.push_back(&io_);
    for (unsigned i = 1; i < options_.threads; ++i) {
      auto& context = connection_contexts_.emplace_back(std::make_unique<IoContext>(1));
      work_guards_.emplace_back(context->get_executor());
      gateway_options.server.connection_contexts.push_back(context.get());
    }
    gateway_options.services = {ledger_.get(), &rate_limiter_, outbox_.get(),
                                gateway_metrics_.get()};
    IdentityLookup lookup =
        [this](const asio::ip::address& remote) -> std::shared_ptr<const policy::PeerEntry> {
      std::shared_ptr<const policy::PeerDirectory> peers = policies_->active()->peers;
      const policy::PeerEntry* peer = resolver_->resolve(*peers, remote);
      if (peer == nullptr) return nullptr;
      return {std::move(peers), peer};
    };
    gateway_ =
        Gateway::create(io_, gateway_options, *store_, std::move(lookup), std::move(state), error);
    if (!gateway_) return false;
    if (!options_.no_dataplane) {
      for (const policy::IpPrefix& prefix : active->document->gateway) {
        asio::ip::address address;
        if (prefix.family == policy::Family::V4) {
          asio::ip::address_v4::bytes_type bytes;
          std::copy_n(prefix.addr.begin(), 4, bytes.begin());
          address = asio::ip::address_v4(bytes);
        } else {
          asio::ip::address_v6::bytes_type bytes;
          std::copy_n(prefix.addr.begin(), 16, bytes.begin());
          address = asio::ip::address_v6(bytes);
        }
        if (!gateway_->listen({address, options_.gateway_port}, error)) return false;
        log("gateway listening on " + address.to_string() + ":" +
            std::to_string(options_.gateway_port));
      }
    }
    for (const auto& endpoint : options_.extra_listen) {
      if (!gateway_->listen(endpoint, error)) return false;
      log("gateway listening on " + endpoint.address().to_string() + ":" +
          std::to_string(gateway_->port()));
    }
    // A policy whose keys do not load or whose guardrails do not compile is rejected before it
    // reaches any data plane, so the gateway and the data planes never disagree.
    policies_->set_validator([this](const policy::Document& document, std::string* why) {
      auto copy = std::make_shared<const policy::Document>(document);
      if (!make_gateway_state(std::move(copy), base_prices_, why)) return false;
      return events::load_subscriptions(document.webhooks, why).has_value();
    });
    policies_->add_listener([this](const std::shared_ptr<const policy::Document>& document) {
      const std::string name = "policy " + std::to_string(document->version);
      std::string why;
      if (!rings_.empty() && !configure_addresses(*document, &why)) log(name + ": routes: " + why);
      auto next = make_gateway_state(document, base_prices_, &why);
      if (!next) {
        log(name + " is active but the gateway keeps the previous providers: " + why);
        return;
      }
      ledger_->set_budgets(document->budgets);
      if (!apply_webhooks(*document, &why)) log(name + ": webhooks: " + why);
      gateway_->set_state(std::move(next));
      nlohmann::json data = {{"version", document->version},
                             {"peers", document->peers.size()},
                             {"rules", document->rules.size()}};
      outbox_->publish(events::make_event(events::kPolicyPushed, data.dump()));
      log(name + " active");
    });
    return true;
  }

  bool start_admin(std::string* error) {
    admin::AdminOptions admin_options;
    admin_options.listen = options_.admin_listen;
    admin_options.hub.endpoint = options_.hub_endpoint;
    if (!options_.hub_public_key_file.empty()) {
      const auto key = read_text(options_.hub_public_key_file, error);
      if (!key) return false;
      admin_options.hub.public_key = key->substr(0, key->find_first_of("\r\n"));
    }
    if (!options_.instances.empty() && !options_.no_dataplane) {
      admin_options.stats_instance = options_.instances.front();
    }
    admin_options.ledger = ledger_.get();
    admin_options.outbox = outbox_.get();
    admin_options.metrics = [this] { return render_metrics(); };
    admin_ = admin::AdminApi::start(io_, std::move(admin_options), *store_, *policies_, error);
    if (!admin_) return false;
    log("admin API on 127.0.0.1:" + std::to_string(admin_->port()));
    resync_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "airlock-resync");
      resync_loop();
    });
    return true;
  }

  std::string render_metrics() const {
    metrics::ScrapeSources sources;
    sources.budgets = [this] {
      std::vector<metrics::BudgetBalance> out;
      const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      for (const budget::Balance& b : ledger_->balances(std::nullopt, std::nullopt, now)) {
        out.push_back({b.budget, b.balance_key.substr(b.balance_key.find('|') + 1), b.spent_usd,
                       b.limit_usd, static_cast<uint64_t>(std::max<int64_t>(b.spent_tokens, 0)),
                       b.limit_tokens});
      }
      return out;
    };
    if (!options_.no_dataplane) {
      for (const std::string& instance : options_.instances) {
        sources.data_planes.push_back(metrics::data_plane_source(instance));
      }
    }
    return metrics::render(registry_, sources);
  }

  // A data plane that restarted comes back without our policy; put it back.
  void resync_loop() {
    std::unique_lock lock(resync_mu_);
    while (!resync_cv_.wait_for(lock, std::chrono::seconds(2), [this] { return stopping_; })) {
      lock.unlock();
      for (const std::string& message : policies_->ensure_pushed()) log(message);
      lock.lock();
    }
  }

  void await_signal() {
    signals_->async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      begin_stop();
      await_signal();
    });
  }

  // A rolling restart should not cut an agent's answer: the gateway stops accepting and the
  // requests in flight get options_.drain_seconds to end.
  void begin_stop() {
    if (draining_) {
      log("second signal: stopping now");
      end_stop();
      return;
    }
    draining_ = true;
    if (admin_) admin_->stop();
    if (gateway_) gateway_->stop();
    drain_deadline_ =
        std::chrono::steady_clock::now() + std::chrono::seconds(options_.drain_seconds);
    const size_t open = gateway_ ? gateway_->open_connections() : 0;
    log("stopping: " + std::to_string(open) + " client connection(s) open, " +
        std::to_string(options_.drain_seconds) + " s for them to finish");
    await_drain();
  }

  void await_drain() {
    const size_t open = gateway_ ? gateway_->open_connections() : 0;
    if (open == 0) return end_stop();
    if (std::chrono::steady_clock::now() >= drain_deadline_) {
      log(std::to_string(open) + " client connection(s) still open after " +
          std::to_string(options_.drain_seconds) + " s: cutting them");
      return end_stop();
    }
    drain_timer_.expires_after(kDrainPoll);
    drain_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) await_drain();
    });
  }

  void end_stop() {
    drain_timer_.cancel();
    {
      std::lock_guard lock(resync_mu_);
      stopping_ = true;
    }
    resync_cv_.notify_all();
    io_.stop();
  }

  void shutdown() {
    {
      std::lock_guard lock(resync_mu_);
      stopping_ = true;
    }
    resync_cv_.notify_all();
    if (resync_.joinable()) resync_.join();
    stop_pumps_ = true;
    for (std::thread& t : pumps_) {
      if (t.joinable()) t.join();
    }
    // No context runs now: run() has joined their threads, or never started them. Requests still
    // in flight end here, each writing its record to the store, before the flush.
    io_.destroy_pending_handlers();
    for (auto& context : connection_contexts_) context->destroy_pending_handlers();
    if (store_) store_->flush();
    if (ledger_) ledger_->flush();
    if (outbox_) outbox_->flush();
  }

  ControlOptions options_;
  std::unique_ptr<admin::PolicyManager> policies_;
  std::unique_ptr<Store> store_;
  // The outbox outlives the ledger, whose threshold events it takes.
  std::unique_ptr<events::Outbox> outbox_;
  std::unique_ptr<budget::Ledger> ledger_;
  budget::RateLimiter rate_limiter_;
  metrics::Registry registry_;
  std::unique_ptr<metrics::GatewayMetrics> gateway_metrics_;
  PriceTable base_prices_;
  // Requests still in flight at shutdown are destroyed with their context's handlers (shutdown()),
  // and each writes its record to the store as it goes. Declared before the gateway and admin API,
  // whose sockets must close while it still exists.
  IoContext io_;
  std::optional<asio::signal_set> signals_;
  // How often a drain looks again at the connections still open.
  static constexpr std::chrono::milliseconds kDrainPoll{20};
  asio::steady_timer drain_timer_{io_};
  std::chrono::steady_clock::time_point drain_deadline_;
  bool draining_ = false;
  // Run by one thread each (see run()); kept running while idle by the work guards.
  std::vector<std::unique_ptr<IoContext>> connection_contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_guards_;
  std::vector<std::unique_ptr<dp::StatsReader>> stats_;
  std::vector<std::unique_ptr<RingTun>> rings_;
  std::unique_ptr<IdentityResolver> resolver_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<admin::AdminApi> admin_;
  std::atomic<bool> stop_pumps_{false};
  std::vector<std::thread> pumps_;
  std::mutex resync_mu_;
  std::condition_variable resync_cv_;
  bool stopping_ = false;
  std::thread resync_;
};

}  // namespace

std::unique_ptr<ControlPlane> ControlPlane::start(const ControlOptions& options,
                                                  std::string* error) {
  auto plane = std::make_unique<ControlPlaneImpl>(options);
  if (!plane->start(error)) return nullptr;
  return plane;
}

}  // namespace airlock::control
