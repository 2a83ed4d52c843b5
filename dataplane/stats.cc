#include "dataplane/stats.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <thread>

#include <nlohmann/json.hpp>

namespace airlock::dp {
namespace {

constexpr std::array<std::string_view, kDropReasonCount> kDropReasonNames = {
    "not_wireguard",        "malformed",       "bad_mac",         "bad_tag",  "replay",
    "no_session",           "keypair_expired", "src_not_allowed", "acl_deny", "no_route",
    "handshake_queue_full", "rate_limited",    "ring_full",       "tx_full",
};

constexpr std::array<std::string_view, kHandshakeEventCount> kHandshakeEventNames = {
    "initiation_rx", "initiation_tx", "response_rx", "response_tx",
    "cookie_rx",     "cookie_tx",     "completed",
};

// A reader gives up on a record whose writer stays mid-write this long (it died there).
constexpr int kSeqReadAttempts = 1000;

constexpr size_t align_cache_line(size_t n) {
  return (n + 63) & ~size_t{63};
}

// The seqlock orders its protected words against the sequence word with a release fence in the
// writer and an acquire fence in the reader. ThreadSanitizer does not model standalone fences (GCC
// rejects them under -fsanitize=thread), so there each word carries the ordering itself: a reader
// whose acquire load returns a word stored (release) in a write section then sees that section's
// odd sequence on its recheck, which is what the fence pair guarantees.
#if defined(__SANITIZE_THREAD__)
constexpr std::memory_order kWordLoadOrder = std::memory_order_acquire;
constexpr std::memory_order kWordStoreOrder = std::memory_order_release;
#else
constexpr std::memory_order kWordLoadOrder = std::memory_order_relaxed;
constexpr std::memory_order kWordStoreOrder = std::memory_order_relaxed;
#endif

void seq_fence([[maybe_unused]] std::memory_order order) {
#if !defined(__SANITIZE_THREAD__)
  std::atomic_thread_fence(order);
#endif
}

uint64_t load_word(const uint64_t& word) {
  // The reader's mapping is read-only; an atomic load never writes, so the cast is safe.
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(word)).load(kWordLoadOrder);
}

void store_word(uint64_t& word, uint64_t value) {
  std::atomic_ref<uint64_t>(word).store(value, kWordStoreOrder);
}

template <class T>
void store_words(std::span<uint64_t> dst, const T& value) {
  const auto src = std::bit_cast<std::array<uint64_t, words_of<T>()>>(value);
  assert(dst.size() == src.size());
  for (size_t i = 0; i < src.size(); ++i) store_word(dst[i], src[i]);
}

template <class T>
T load_words(std::span<const uint64_t> src) {
  std::array<uint64_t, words_of<T>()> words{};
  assert(src.size() == words.size());
  for (size_t i = 0; i < words.size(); ++i) words[i] = load_word(src[i]);
  return std::bit_cast<T>(words);
}

// Seqlock writer (single writer): odd sequence while the protected words change.
class SeqWriteSection {
 public:
  explicit SeqWriteSection(uint64_t& seq)
      : seq_(seq), start_(seq_.load(std::memory_order_relaxed)) {
    seq_.store(start_ + 1, std::memory_order_relaxed);
    seq_fence(std::memory_order_release);
  }
  SeqWriteSection(const SeqWriteSection&) = delete;
  SeqWriteSection& operator=(const SeqWriteSection&) = delete;
  ~SeqWriteSection() { seq_.store(start_ + 2, std::memory_order_release); }

 private:
  std::atomic_ref<uint64_t> seq_;
  uint64_t start_;
};

// Runs `copy` until it ran entirely between two equal, even sequence values.
template <class F>
bool seq_read(const uint64_t& seq_word, F&& copy) {
  std::atomic_ref<uint64_t> seq(const_cast<uint64_t&>(seq_word));
  for (int attempt = 0; attempt < kSeqReadAttempts; ++attempt) {
    const uint64_t before = seq.load(std::memory_order_acquire);
    if ((before & 1) == 0) {
      copy();
      seq_fence(std::memory_order_acquire);
      if (seq.load(std::memory_order_relaxed) == before) return true;
    }
    std::this_thread::yield();
  }
  return false;
}

uint64_t unix_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

template <class T>
T& at(std::span<std::byte> region, size_t offset) {
  return *reinterpret_cast<T*>(region.data() + offset);
}

template <class T>
const T& at(std::span<const std::byte> region, size_t offset) {
  return *reinterpret_cast<const T*>(region.data() + offset);
}

struct RegionView {
  std::span<const std::byte> bytes;
  const StatsLayout& layout;

  const StatsHeader& header() const { return at<StatsHeader>(bytes, 0); }
  const PortSlot& port(uint32_t i) const {
    return at<PortSlot>(bytes, layout.ports_offset + i * sizeof(PortSlot));
  }
  size_t worker_base(uint32_t w) const { return layout.workers_offset + w * layout.worker_stride; }
  const WorkerCounters& worker(uint32_t w) const {
    return at<WorkerCounters>(bytes, worker_base(w));
  }
  const PeerTraffic& worker_peer(uint32_t w, uint32_t slot) const {
    return at<PeerTraffic>(
        bytes, worker_base(w) + layout.worker_peers_offset + slot * sizeof(PeerTraffic));
  }
  const uint64_t& worker_rule_hits(uint32_t w, uint32_t rule) const {
    return at<uint64_t>(bytes,
                        worker_base(w) + layout.worker_rules_offset + rule * sizeof(uint64_t));
  }
  const PeerSlot& peer(uint32_t slot) const {
    return at<PeerSlot>(bytes, layout.peers_offset + slot * sizeof(PeerSlot));
  }
  const RuleSlot& rule(uint32_t i) const {
    return at<RuleSlot>(bytes, layout.rules_offset + i * sizeof(RuleSlot));
  }

  PeerTraffic peer_traffic_sum(uint32_t slot) const {
    PeerTraffic sum{};
    for (uint32_t w = 0; w < layout.nb_workers; ++w) {
      const PeerTraffic& t = worker_peer(w, slot);
      sum.rx_packets += load_word(t.rx_packets);
      sum.rx_bytes += load_word(t.rx_bytes);
      sum.tx_packets += load_word(t.tx_packets);
      sum.tx_bytes += load_word(t.tx_bytes);
    }
    return sum;
  }
  uint64_t rule_hits_sum(uint32_t rule) const {
    uint64_t sum = 0;
    for (uint32_t w = 0; w < layout.nb_workers; ++w) sum += load_word(worker_rule_hits(w, rule));
    return sum;
  }
};

WorkerSnapshot read_worker(const WorkerCounters& c) {
  WorkerSnapshot s;
  s.rx_packets = load_word(c.rx_packets);
  s.rx_bytes = load_word(c.rx_bytes);
  s.tx_packets = load_word(c.tx_packets);
  s.tx_bytes = load_word(c.tx_bytes);
  s.loops = load_word(c.loops);
  s.punted_packets = load_word(c.punted_packets);
  s.returned_packets = load_word(c.returned_packets);
  s.forwarded_packets = load_word(c.forwarded_packets);
  for (size_t r = 0; r < kDropReasonCount; ++r) s.drops[r] = load_word(c.drops[r]);
  for (size_t e = 0; e < kHandshakeEventCount; ++e) s.handshakes[e] = load_word(c.handshakes[e]);
  return s;
}

void add_to(WorkerSnapshot& total, const WorkerSnapshot& w) {
  total.rx_packets += w.rx_packets;
  total.rx_bytes += w.rx_bytes;
  total.tx_packets += w.tx_packets;
  total.tx_bytes += w.tx_bytes;
  total.loops += w.loops;
  total.punted_packets += w.punted_packets;
  total.returned_packets += w.returned_packets;
  total.forwarded_packets += w.forwarded_packets;
  for (size_t r = 0; r < kDropReasonCount; ++r) total.drops[r] += w.drops[r];
  for (size_t e = 0; e < kHandshakeEventCount; ++e) total.handshakes[e] += w.handshakes[e];
}

uint64_t since(uint64_t now, uint64_t baseline) {
  return now >= baseline ? now - baseline : 0;
}

// A slot's record, untorn; nullopt while its writer keeps it busy or when the slot is inactive.
std::optional<PeerRecord> read_active_peer(const PeerSlot& shared) {
  PeerRecord record;
  if (!seq_read(shared.seq, [&] { record = load_words<PeerRecord>(std::span(shared.words)); }) ||
      record.active == 0) {
    return std::nullopt;
  }
  return record;
}

}  // namespace

std::string_view drop_reason_name(DropReason reason) {
  const auto i = static_cast<size_t>(reason);
  return i < kDropReasonCount ? kDropReasonNames[i] : "unknown";
}

std::string_view handshake_event_name(HandshakeEvent event) {
  const auto i = static_cast<size_t>(event);
  return i < kHandshakeEventCount ? kHandshakeEventNames[i] : "unknown";
}

std::string_view flow_steering_name(FlowSteering steering) {
  switch (steering) {
    case FlowSteering::kHardware:
      return "hardware";
    case FlowSteering::kSoftware:
      return "software";
    case FlowSteering::kUnknown:
      break;
  }
  return "unknown";
}

void set_fixed_string(std::span<char> field, std::string_view text) {
  if (field.empty()) return;
  size_t n = std::min(text.size(), field.size() - 1);
  // Never leave half a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
  if (n < text.size()) {
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  }
  std::fill(field.begin(), field.end(), '\0');
  std::copy_n(text.begin(), n, field.begin());
}

std::string_view fixed_string(std::span<const char> field) {
  const auto end = std::find(field.begin(), field.end(), '\0');
  return {field.data(), static_cast<size_t>(end - field.begin())};
}

std::optional<StatsLayout> StatsLayout::compute(uint32_t nb_workers, uint32_t max_peers,
                                                uint32_t max_rules, std::string* error) {
  if (nb_workers == 0 || nb_workers > kMaxStatsWorkers || max_peers > kMaxStatsPeers ||
      max_rules > kMaxStatsRules) {
    if (error != nullptr) {
      *error = "stats layout out of range: nb_workers " + std::to_string(nb_workers) + " (1.." +
               std::to_string(kMaxStatsWorkers) + "), max_peers " + std::to_string(max_peers) +
               " (<= " + std::to_string(kMaxStatsPeers) + "), max_rules " +
               std::to_string(max_rules) + " (<= " + std::to_string(kMaxStatsRules) + ")";
    }
    return std::nullopt;
  }
  StatsLayout l;
  l.nb_workers = nb_workers;
  l.max_peers = max_peers;
  l.max_rules = max_rules;
  l.ports_offset = align_cache_line(sizeof(StatsHeader));
  l.workers_offset = l.ports_offset + kMaxStatsPorts * sizeof(PortSlot);
  l.worker_peers_offset = sizeof(WorkerCounters);
  l.worker_rules_offset = l.worker_peers_offset + size_t{max_peers} * sizeof(PeerTraffic);
  // Whole cache lines per worker, so two workers never write the same line.
  l.worker_stride = align_cache_line(l.worker_rules_offset + size_t{max_rules} * sizeof(uint64_t));
  l.peers_offset = l.workers_offset + size_t{nb_workers} * l.worker_stride;
  l.rules_offset = l.peers_offset + size_t{max_peers} * sizeof(PeerSlot);
  l.total_size = align_cache_line(l.rules_offset + size_t{max_rules} * sizeof(RuleSlot));
  return l;
}

std::optional<StatsRegion> StatsRegion::create(std::string_view name, uint32_t nb_workers,
                                               uint32_t max_peers, uint32_t max_rules,
                                               std::string* error) {
  std::optional<StatsLayout> layout = StatsLayout::compute(nb_workers, max_peers, max_rules, error);
  if (!layout) return std::nullopt;
  std::optional<SharedMemory> shm = SharedMemory::create(name, layout->total_size, error);
  if (!shm) return std::nullopt;
  auto& h = at<StatsHeader>(shm->bytes(), 0);
  h.layout_version = kStatsLayoutVersion;
  h.nb_workers = nb_workers;
  h.max_peers = max_peers;
  h.max_rules = max_rules;
  h.pid = static_cast<uint32_t>(getpid());
  h.started_unix_ns = unix_now_ns();
  h.total_size = layout->total_size;
  // Readers check the magic first, so it goes in last.
  std::atomic_ref<uint64_t>(h.magic).store(kStatsMagic, std::memory_order_release);
  return StatsRegion(std::move(*shm), *layout);
}

StatsRegion::StatsRegion(SharedMemory shm, const StatsLayout& layout)
    : shm_(std::move(shm)), layout_(layout) {
  workers_.reserve(layout_.nb_workers);
  for (uint32_t w = 0; w < layout_.nb_workers; ++w) {
    std::byte* base = shm_.bytes().data() + layout_.workers_offset + w * layout_.worker_stride;
    workers_.emplace_back(
        reinterpret_cast<WorkerCounters*>(base),
        std::span(reinterpret_cast<PeerTraffic*>(base + layout_.worker_peers_offset),
                  layout_.max_peers),
        std::span(reinterpret_cast<uint64_t*>(base + layout_.worker_rules_offset),
                  layout_.max_rules));
  }
}

PeerTraffic StatsRegion::peer_traffic_sum(uint32_t slot) const {
  return RegionView{shm_.bytes(), layout_}.peer_traffic_sum(slot);
}

uint64_t StatsRegion::rule_hits_sum(uint32_t rule) const {
  return RegionView{shm_.bytes(), layout_}.rule_hits_sum(rule);
}

void StatsRegion::publish_port(uint32_t index, const PortCounters& counters) {
  assert(index < kMaxStatsPorts);
  auto& slot = at<PortSlot>(shm_.bytes(), layout_.ports_offset + index * sizeof(PortSlot));
  SeqWriteSection section(slot.seq);
  store_words(std::span(slot.words), PortRecord{1, counters});
}

void StatsRegion::publish_peer(uint32_t slot, const PeerRecord& record) {
  assert(slot < layout_.max_peers);
  auto& shared = at<PeerSlot>(shm_.bytes(), layout_.peers_offset + slot * sizeof(PeerSlot));
  // This lcore is the only writer, so it can read its own record without the seqlock.
  const auto current = load_words<PeerRecord>(std::span(shared.words));
  PeerRecord next = record;
  next.active = 1;
  next.traffic_baseline = current.active ? current.traffic_baseline : peer_traffic_sum(slot);
  SeqWriteSection section(shared.seq);
  store_words(std::span(shared.words), next);
}

void StatsRegion::clear_peer(uint32_t slot) {
  assert(slot < layout_.max_peers);
  auto& shared = at<PeerSlot>(shm_.bytes(), layout_.peers_offset + slot * sizeof(PeerSlot));
  SeqWriteSection section(shared.seq);
  store_words(std::span(shared.words), PeerRecord{});
}

void StatsRegion::set_rule_names(uint64_t policy_version, std::span<const std::string_view> names) {
  assert(names.size() <= layout_.max_rules);
  auto& h = at<StatsHeader>(shm_.bytes(), 0);
  SeqWriteSection section(h.rules_seq);
  store_word(h.policy_version, policy_version);
  for (uint32_t i = 0; i < layout_.max_rules; ++i) {
    RuleRecord rule;
    if (i < names.size()) {
      set_fixed_string(rule.name, names[i]);
      rule.hits_baseline = rule_hits_sum(i);
    }
    auto& shared = at<RuleSlot>(shm_.bytes(), layout_.rules_offset + i * sizeof(RuleSlot));
    store_words(std::span(shared.words), rule);
  }
}

std::optional<StatsReader> StatsReader::open(std::string_view name, std::string* error) {
  std::optional<SharedMemory> shm = SharedMemory::open(name, false, error);
  if (!shm) return std::nullopt;
  auto fail = [&](const std::string& why) -> std::optional<StatsReader> {
    if (error != nullptr) *error = "stats region " + std::string(name) + ": " + why;
    return std::nullopt;
  };
  std::span<const std::byte> bytes = shm->bytes();
  if (bytes.size() < sizeof(StatsHeader)) return fail("too small for a header");
  const auto& h = at<StatsHeader>(bytes, 0);
  const uint64_t magic =
      std::atomic_ref<uint64_t>(const_cast<uint64_t&>(h.magic)).load(std::memory_order_acquire);
  if (magic != kStatsMagic) return fail("bad magic (not an Airlock stats region, or not ready)");
  if (h.layout_version != kStatsLayoutVersion) {
    return fail("layout version " + std::to_string(h.layout_version) + ", this reader needs " +
                std::to_string(kStatsLayoutVersion));
  }
  std::string why;
  std::optional<StatsLayout> layout =
      StatsLayout::compute(h.nb_workers, h.max_peers, h.max_rules, &why);
  if (!layout) return fail(why);
  if (layout->total_size != h.total_size || layout->total_size > bytes.size()) {
    return fail("size " + std::to_string(bytes.size()) + " does not match its header");
  }
  return StatsReader(std::move(*shm), *layout);
}

std::optional<PeerRecord> StatsReader::peer(uint32_t slot) const {
  if (slot >= layout_.max_peers) return std::nullopt;
  return read_active_peer(RegionView{shm_.bytes(), layout_}.peer(slot));
}

StatsSnapshot StatsReader::snapshot() const {
  const RegionView region{shm_.bytes(), layout_};
  const StatsHeader& h = region.header();
  StatsSnapshot s;
  s.started_unix_ns = h.started_unix_ns;
  s.pid = h.pid;

  for (uint32_t i = 0; i < kMaxStatsPorts; ++i) {
    PortRecord port;
    const PortSlot& slot = region.port(i);
    if (seq_read(slot.seq, [&] { port = load_words<PortRecord>(std::span(slot.words)); }) &&
        port.present != 0) {
      s.ports.push_back({i, port.counters});
    }
  }

  s.workers.reserve(layout_.nb_workers);
  for (uint32_t w = 0; w < layout_.nb_workers; ++w) {
    s.workers.push_back(read_worker(region.worker(w)));
    add_to(s.total, s.workers.back());
  }

  for (uint32_t slot = 0; slot < layout_.max_peers; ++slot) {
    const std::optional<PeerRecord> record = read_active_peer(region.peer(slot));
    if (!record) continue;
    const PeerTraffic now = region.peer_traffic_sum(slot);
    const PeerTraffic& base = record->traffic_baseline;
    s.peers.push_back(
        {slot,
         *record,
         {since(now.rx_packets, base.rx_packets), since(now.rx_bytes, base.rx_bytes),
          since(now.tx_packets, base.tx_packets), since(now.tx_bytes, base.tx_bytes)}});
  }

  std::vector<RuleRecord> rules(layout_.max_rules);
  uint64_t policy_version = 0;
  const bool rules_ok = seq_read(h.rules_seq, [&] {
    policy_version = load_word(h.policy_version);
    for (uint32_t i = 0; i < layout_.max_rules; ++i) {
      rules[i] = load_words<RuleRecord>(std::span(region.rule(i).words));
    }
  });
  if (rules_ok) {
    s.policy_version = policy_version;
    for (uint32_t i = 0; i < layout_.max_rules; ++i) {
      const std::string_view name = fixed_string(rules[i].name);
      if (name.empty()) continue;
      s.rules.push_back(
          {i, std::string(name), since(region.rule_hits_sum(i), rules[i].hits_baseline)});
    }
  }
  return s;
}

namespace {

using Json = nlohmann::ordered_json;

std::string base64(std::span<const uint8_t> bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::optional<std::string> endpoint_string(const PeerEndpoint& e) {
  char text[INET6_ADDRSTRLEN] = {};
  if ((e.family != AF_INET && e.family != AF_INET6) ||
      inet_ntop(e.family, e.addr.data(), text, sizeof(text)) == nullptr) {
    return std::nullopt;
  }
  const std::string port = std::to_string(e.port);
  return e.family == AF_INET6 ? "[" + std::string(text) + "]:" + port : text + (":" + port);
}

Json drops_json(const WorkerSnapshot& w) {
  Json drops = Json::object();
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    drops[std::string(drop_reason_name(static_cast<DropReason>(r)))] = w.drops[r];
  }
  return drops;
}

Json handshakes_json(const WorkerSnapshot& w) {
  Json handshakes = Json::object();
  for (size_t e = 0; e < kHandshakeEventCount; ++e) {
    handshakes[std::string(handshake_event_name(static_cast<HandshakeEvent>(e)))] = w.handshakes[e];
  }
  return handshakes;
}

Json worker_json(const WorkerSnapshot& w) {
  return Json{{"rx_packets", w.rx_packets},
              {"rx_bytes", w.rx_bytes},
              {"tx_packets", w.tx_packets},
              {"tx_bytes", w.tx_bytes},
              {"loops", w.loops},
              {"punted_packets", w.punted_packets},
              {"returned_packets", w.returned_packets},
              {"forwarded_packets", w.forwarded_packets},
              {"drops", drops_json(w)},
              {"handshakes", handshakes_json(w)}};
}

Json port_json(const PortSnapshot& p) {
  const PortCounters& c = p.counters;
  return Json{{"index", p.index},         {"ipackets", c.ipackets},
              {"opackets", c.opackets},   {"ibytes", c.ibytes},
              {"obytes", c.obytes},       {"imissed", c.imissed},
              {"ierrors", c.ierrors},     {"oerrors", c.oerrors},
              {"rx_nombuf", c.rx_nombuf}, {"flow_steering", flow_steering_name(c.flow_steering)}};
}

Json peer_json(const PeerSnapshot& p) {
  const std::optional<std::string> endpoint = endpoint_string(p.record.endpoint);
  return Json{{"slot", p.slot},
              {"public_key", base64(p.record.public_key)},
              {"user", fixed_string(p.record.user)},
              {"device", fixed_string(p.record.device)},
              {"endpoint", endpoint ? Json(*endpoint) : Json(nullptr)},
              {"last_handshake_unix_ns", p.record.last_handshake_unix_ns},
              {"rx_packets", p.traffic.rx_packets},
              {"rx_bytes", p.traffic.rx_bytes},
              {"tx_packets", p.traffic.tx_packets},
              {"tx_bytes", p.traffic.tx_bytes}};
}

void append_line(std::string& out, const char* format, auto... args) {
  char line[512];
  const int n = std::snprintf(line, sizeof(line), format, args...);
  if (n > 0) out.append(line, std::min(static_cast<size_t>(n), sizeof(line) - 1));
  out += '\n';
}

}  // namespace

std::string to_json(const StatsSnapshot& s) {
  Json doc{
      {"policy_version", s.policy_version}, {"started_unix_ns", s.started_unix_ns}, {"pid", s.pid}};
  Json& ports = doc["ports"] = Json::array();
  for (const PortSnapshot& p : s.ports) ports.push_back(port_json(p));
  Json& workers = doc["workers"] = Json::array();
  for (size_t i = 0; i < s.workers.size(); ++i) {
    Json w{{"index", i}};
    w.update(worker_json(s.workers[i]));
    workers.push_back(std::move(w));
  }
  doc["total"] = worker_json(s.total);
  doc["drops"] = drops_json(s.total);
  doc["handshakes"] = handshakes_json(s.total);
  Json& peers = doc["peers"] = Json::array();
  for (const PeerSnapshot& p : s.peers) peers.push_back(peer_json(p));
  Json& rules = doc["rules"] = Json::array();
  for (const RuleSnapshot& r : s.rules) {
    rules.push_back(Json{{"index", r.index}, {"name", r.name}, {"hits", r.hits}});
  }
  // Names come from configuration and may not be UTF-8; never throw over them.
  return doc.dump(2, ' ', false, Json::error_handler_t::replace);
}

std::string to_table(const StatsSnapshot& s) {
  std::string out;
  append_line(out, "policy_version %" PRIu64 "  pid %" PRIu32 "  started_unix_ns %" PRIu64,
              s.policy_version, s.pid, s.started_unix_ns);
  append_line(out, "%-5s %14s %14s %16s %16s %10s %10s %10s %10s  %s", "port", "ipackets",
              "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors", "rx_nombuf",
              "steering");
  for (const PortSnapshot& p : s.ports) {
    const PortCounters& c = p.counters;
    append_line(out,
                "%-5" PRIu32 " %14" PRIu64 " %14" PRIu64 " %16" PRIu64 " %16" PRIu64 " %10" PRIu64
                " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "  %s",
                p.index, c.ipackets, c.opackets, c.ibytes, c.obytes, c.imissed, c.ierrors,
                c.oerrors, c.rx_nombuf, flow_steering_name(c.flow_steering).data());
  }
  append_line(out, "%-6s %14s %16s %14s %16s %14s %12s %12s %12s", "worker", "rx_packets",
              "rx_bytes", "tx_packets", "tx_bytes", "loops", "punted", "returned", "forwarded");
  auto worker_line = [&](const std::string& label, const WorkerSnapshot& w) {
    append_line(out,
                "%-6s %14" PRIu64 " %16" PRIu64 " %14" PRIu64 " %16" PRIu64 " %14" PRIu64
                " %12" PRIu64 " %12" PRIu64 " %12" PRIu64,
                label.c_str(), w.rx_packets, w.rx_bytes, w.tx_packets, w.tx_bytes, w.loops,
                w.punted_packets, w.returned_packets, w.forwarded_packets);
  };
  for (size_t i = 0; i < s.workers.size(); ++i) worker_line(std::to_string(i), s.workers[i]);
  worker_line("total", s.total);
  append_line(out, "%s", "drops");
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    if (s.total.drops[r] == 0) continue;
    append_line(out, "  %-22s %14" PRIu64, drop_reason_name(static_cast<DropReason>(r)).data(),
                s.total.drops[r]);
  }
  append_line(out, "%s", "handshakes");
  for (size_t e = 0; e < kHandshakeEventCount; ++e) {
    append_line(out, "  %-22s %14" PRIu64,
                handshake_event_name(static_cast<HandshakeEvent>(e)).data(), s.total.handshakes[e]);
  }
  append_line(out, "%-6s %-44s %-20s %-20s %-30s %12s %14s %12s %14s", "peer", "public_key", "user",
              "device", "endpoint", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes");
  for (const PeerSnapshot& p : s.peers) {
    const std::string user(fixed_string(p.record.user));
    const std::string device(fixed_string(p.record.device));
    append_line(out,
                "%-6" PRIu32 " %-44s %-20s %-20s %-30s %12" PRIu64 " %14" PRIu64 " %12" PRIu64
                " %14" PRIu64,
                p.slot, base64(p.record.public_key).c_str(), user.c_str(), device.c_str(),
                endpoint_string(p.record.endpoint).value_or("-").c_str(), p.traffic.rx_packets,
                p.traffic.rx_bytes, p.traffic.tx_packets, p.traffic.tx_bytes);
  }
  append_line(out, "%-6s %-64s %14s", "rule", "name", "hits");
  for (const RuleSnapshot& r : s.rules) {
    append_line(out, "%-6" PRIu32 " %-64s %14" PRIu64, r.index, r.name.c_str(), r.hits);
  }
  return out;
}

}  // namespace airlock::dp
