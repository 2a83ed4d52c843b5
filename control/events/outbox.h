// The durable event outbox: events are persisted to SQLite and delivered to webhooks as signed
// JSON POSTs, retried with exponential backoff until the receiver answers 2xx or the event is
// too old. Delivery is at least once: a receiver deduplicates on the airlock-event-id header.
// publish() only queues, so a slow disk or a dead receiver never slows the request path.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control/events/event.h"
#include "control/events/signature.h"
#include "control/secrets/secret.h"
#include "policy/document.h"

namespace airlock::control::events {

// One webhook: where to POST, the HMAC secret, and the event types it wants (empty: all).
struct Subscription {
  std::string url;
  Secret secret;
  std::vector<std::string> events;
};

// The policy's webhooks with their secrets loaded; nullopt with *error (naming the reference,
// never a secret) when a secret cannot be loaded.
std::optional<std::vector<Subscription>> load_subscriptions(
    const std::vector<policy::WebhookSpec>& webhooks, std::string* error);

struct OutboxOptions {
  // Retry n waits min(first_retry * 2^(n-1), max_retry), scaled by a random 0.8..1.2.
  std::chrono::milliseconds first_retry{1'000};
  std::chrono::milliseconds max_retry{300'000};
  // A delivery still failing this long after its event is marked failed.
  std::chrono::milliseconds max_age{24 * 3'600'000};
  // Events whose every delivery has finished (delivered or failed), and delivery-log rows, are
  // deleted this long after they happened, so the outbox does not grow without end. A pending
  // delivery is never deleted, however old. Zero keeps everything.
  std::chrono::milliseconds retention{30LL * 24 * 3'600'000};
  // How often the scheduler expires deliveries to removed webhooks and prunes past retention.
  std::chrono::milliseconds sweep_interval{60'000};
  size_t max_in_flight = 16;  // concurrent POSTs over all webhooks
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds response_timeout{30'000};  // to the header, and between body reads
  // Shutdown waits this long for POSTs in flight; one cut short is sent again after a restart.
  std::chrono::milliseconds stop_grace{5'000};
  std::string ca_file;  // extra trust anchors for https receivers
  // publish() drops (and counts) events beyond this backlog rather than block or grow unbounded
  // while the database cannot keep up.
  size_t max_queued_events = 100'000;
};

enum class DeliveryOutcome { kDelivered, kRetry, kFailed };

// One row of the delivery log: an attempt, or the final "failed" verdict of an expired one.
struct DeliveryAttempt {
  int64_t seq = 0;  // increasing; pagination key
  std::string event_id;
  std::string event_type;
  std::string url;
  uint32_t attempt = 0;  // 1 for the first POST
  int status = 0;        // receiver's HTTP status; 0 when none was received
  DeliveryOutcome outcome = DeliveryOutcome::kRetry;
  std::string error;  // empty when delivered; secrets redacted
  int64_t time_ms = 0;
  int64_t latency_ms = 0;
};

struct DeliveryQuery {
  std::optional<std::string> event_id;
  std::optional<std::string> url;
  std::optional<DeliveryOutcome> outcome;
  std::optional<int64_t> since_ms;
  std::optional<int64_t> before_seq;  // the previous page's last seq
  uint32_t limit = 100;               // at most 1000
};

struct OutboxStats {
  uint64_t pending = 0;    // deliveries awaiting (another) attempt
  uint64_t delivered = 0;  // deliveries acknowledged with 2xx
  uint64_t failed = 0;     // deliveries given up after max_age
  uint64_t dropped = 0;    // events publish() refused because the queue was full (this run)
};

std::string_view delivery_outcome_name(DeliveryOutcome outcome);

class Outbox {
 public:
  // Opens or creates the outbox database (tables outbox, deliveries, delivery_log; owner-only
  // permissions) and starts the writer and dispatcher threads. Deliveries left pending by an
  // earlier run resume once set_webhooks() names their URL again.
  static std::unique_ptr<Outbox> open(const std::string& sqlite_path, std::string* error,
                                      OutboxOptions options = {});
  // Persists every published event and waits up to stop_grace for POSTs in flight.
  virtual ~Outbox() = default;

  // Queues the event for persisting and delivery to the webhooks subscribed at the time it is
  // persisted. Never waits for the disk or a receiver.
  virtual void publish(Event event) = 0;

  // Whether any current webhook takes events of `type`: publishers skip building events no one
  // receives (the request path publishes several per request).
  virtual bool wants(std::string_view type) const = 0;

  // Replaces the webhooks (on every policy swap). Returns false and keeps the previous set when
  // a URL is not a valid http(s) URL. A repeated URL keeps its first entry. Deliveries to a URL
  // no longer listed wait (a later policy may list it again) until max_age, then fail.
  virtual bool set_webhooks(std::vector<Subscription> subscriptions, std::string* error) = 0;

  // Waits until every event published before the call is persisted.
  virtual void flush() = 0;

  // The delivery log, newest first.
  virtual std::vector<DeliveryAttempt> deliveries(const DeliveryQuery& query,
                                                  std::string* error) = 0;
  virtual OutboxStats stats(std::string* error) = 0;
};

}  // namespace airlock::control::events
