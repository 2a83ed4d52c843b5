#include "control/metrics/scrape.h"

#include <algorithm>
#include <map>
#include <utility>

#include "policy/policy.h"

namespace airlock::control::metrics {

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Gathers samples by family name, so several instances share one HELP/TYPE block.
class Families {
 public:
  void add(const std::string& name, std::string_view help, MetricType type, Labels labels,
           double value) {
    MetricFamily& f = families_[name];
    if (f.name.empty()) f = {name, std::string(help), type, {}};
    f.samples.push_back({"", std::move(labels), value});
  }

  std::vector<MetricFamily> take() {
    std::vector<MetricFamily> out;
    for (auto& [name, f] : families_) {
      std::stable_sort(f.samples.begin(), f.samples.end(),
                       [](const Sample& a, const Sample& b) { return a.labels < b.labels; });
      out.push_back(std::move(f));
    }
    return out;
  }

 private:
  std::map<std::string, MetricFamily> families_;
};

double dollars(Picodollars amount) {
  return static_cast<double>(amount) / static_cast<double>(kPicodollarsPerDollar);
}

void add_instance(Families& out, const std::string& instance, const dp::StatsSnapshot& s) {
  const auto counter = [&](const std::string& name, std::string_view help, Labels labels,
                           uint64_t value) {
    labels.insert(labels.begin(), {"instance", instance});
    out.add(name, help, MetricType::kCounter, std::move(labels), static_cast<double>(value));
  };

  for (const dp::PeerSnapshot& p : s.peers) {
    const Labels peer = {{"peer", policy::encode_key_base64(p.record.public_key)},
                         {"user", std::string(dp::fixed_string(p.record.user))},
                         {"device", std::string(dp::fixed_string(p.record.device))}};
    const std::string_view since = " since the peer was installed in its slot.";
    counter("airlock_dataplane_peer_rx_bytes_total",
            std::string("Bytes received from the peer").append(since), peer, p.traffic.rx_bytes);
    counter("airlock_dataplane_peer_rx_packets_total",
            std::string("Packets received from the peer").append(since), peer,
            p.traffic.rx_packets);
    counter("airlock_dataplane_peer_tx_bytes_total",
            std::string("Bytes sent to the peer").append(since), peer, p.traffic.tx_bytes);
    counter("airlock_dataplane_peer_tx_packets_total",
            std::string("Packets sent to the peer").append(since), peer, p.traffic.tx_packets);
    if (p.record.last_handshake_unix_ns != 0) {
      Labels labels = peer;
      labels.insert(labels.begin(), {"instance", instance});
      out.add("airlock_dataplane_peer_last_handshake_seconds",
              "Unix time of the peer's last completed handshake.", MetricType::kGauge,
              std::move(labels), static_cast<double>(p.record.last_handshake_unix_ns) / 1e9);
    }
  }

  for (size_t i = 0; i < dp::kDropReasonCount; ++i) {
    counter("airlock_dataplane_drops_total", "Packets dropped by the data plane, by reason.",
            {{"reason", std::string(dp::drop_reason_name(static_cast<dp::DropReason>(i)))}},
            s.total.drops[i]);
  }

  for (size_t i = 0; i < dp::kHandshakeEventCount; ++i) {
    counter("airlock_dataplane_handshakes_total",
            "WireGuard handshake messages received and sent, by type, and handshakes completed.",
            {{"kind", std::string(dp::handshake_event_name(static_cast<dp::HandshakeEvent>(i)))}},
            s.total.handshakes[i]);
  }

  for (size_t w = 0; w < s.workers.size(); ++w) {
    const dp::WorkerSnapshot& ws = s.workers[w];
    const Labels worker = {{"worker", std::to_string(w)}};
    counter("airlock_dataplane_worker_rx_bytes_total", "Bytes received by the worker.", worker,
            ws.rx_bytes);
    counter("airlock_dataplane_worker_rx_packets_total", "Packets received by the worker.", worker,
            ws.rx_packets);
    counter("airlock_dataplane_worker_tx_bytes_total", "Bytes sent by the worker.", worker,
            ws.tx_bytes);
    counter("airlock_dataplane_worker_tx_packets_total", "Packets sent by the worker.", worker,
            ws.tx_packets);
  }
  counter("airlock_dataplane_punted_packets_total", "Inner packets handed to the control plane.",
          {}, s.total.punted_packets);
  counter("airlock_dataplane_returned_packets_total",
          "Inner packets the control plane handed back for a peer.", {}, s.total.returned_packets);
  counter("airlock_dataplane_forwarded_packets_total", "Inner packets sent peer to peer.", {},
          s.total.forwarded_packets);

  for (const dp::RuleSnapshot& r : s.rules) {
    counter("airlock_dataplane_rule_hits_total",
            "Packets matched by the policy rule, since the policy was applied.", {{"rule", r.name}},
            r.hits);
  }

  for (const dp::PortSnapshot& p : s.ports) {
    const Labels port = {{"port", std::to_string(p.index)}};
    const dp::PortCounters& c = p.counters;
    counter("airlock_dataplane_port_rx_packets_total", "Packets received by the port.", port,
            c.ipackets);
    counter("airlock_dataplane_port_tx_packets_total", "Packets sent by the port.", port,
            c.opackets);
    counter("airlock_dataplane_port_rx_bytes_total", "Bytes received by the port.", port, c.ibytes);
    counter("airlock_dataplane_port_tx_bytes_total", "Bytes sent by the port.", port, c.obytes);
    counter("airlock_dataplane_port_rx_missed_total",
            "Packets the port dropped because its receive queues were full.", port, c.imissed);
    counter("airlock_dataplane_port_rx_errors_total", "Erroneous packets received by the port.",
            port, c.ierrors);
    counter("airlock_dataplane_port_tx_errors_total", "Packets the port failed to send.", port,
            c.oerrors);
    counter("airlock_dataplane_port_rx_nombuf_total",
            "Receive failures for want of a packet buffer.", port, c.rx_nombuf);
  }
}

}  // namespace

DataPlaneSource data_plane_source(std::string instance) {
  std::string region = instance + "-stats";
  return {std::move(instance), [region = std::move(region)]() -> std::optional<dp::StatsSnapshot> {
            std::optional<dp::StatsReader> reader = dp::StatsReader::open(region, nullptr);
            if (!reader) return std::nullopt;
            return reader->snapshot();
          }};
}

std::vector<MetricFamily> budget_families(const std::vector<BudgetBalance>& balances) {
  Families out;
  for (const BudgetBalance& b : balances) {
    const Labels labels = {{"budget", b.budget}, {"key", b.key}};
    out.add("airlock_budget_spent_usd", "Spent in the budget's current window, in US dollars.",
            MetricType::kGauge, labels, dollars(b.spent));
    out.add("airlock_budget_spent_tokens", "Tokens used in the budget's current window.",
            MetricType::kGauge, labels, static_cast<double>(b.spent_tokens));
    if (b.limit) {
      out.add("airlock_budget_limit_usd", "The budget's limit per window, in US dollars.",
              MetricType::kGauge, labels, dollars(*b.limit));
    }
    if (b.limit_tokens) {
      out.add("airlock_budget_limit_tokens", "The budget's token limit per window.",
              MetricType::kGauge, labels, static_cast<double>(*b.limit_tokens));
    }
  }
  return out.take();
}

std::vector<MetricFamily> data_plane_families(const std::vector<DataPlaneSource>& sources) {
  Families out;
  for (const DataPlaneSource& source : sources) {
    const std::optional<dp::StatsSnapshot> snapshot =
        source.snapshot ? source.snapshot() : std::nullopt;
    out.add("airlock_dataplane_up", "1 when the data plane's counters could be read.",
            MetricType::kGauge, {{"instance", source.instance}}, snapshot ? 1 : 0);
    if (snapshot) add_instance(out, source.instance, *snapshot);
  }
  return out.take();
}

std::string render(const Registry& registry, const ScrapeSources& sources) {
  std::vector<MetricFamily> families = registry.collect();
  if (sources.budgets) {
    for (MetricFamily& f : budget_families(sources.budgets())) families.push_back(std::move(f));
  }
  for (MetricFamily& f : data_plane_families(sources.data_planes)) {
    families.push_back(std::move(f));
  }
  return format_text(std::move(families));
}

}  // namespace airlock::control::metrics
