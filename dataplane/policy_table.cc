// Turning a verified policy buffer into the tables workers read, and swapping it in. Peers keep
// their slot (and so their sessions and counters) across policies as long as their public key
// stays; the new tables are complete before the single pointer store that publishes them, so a
// packet sees either the old policy or the new one, never a mix.
#include <rte_byteorder.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "dataplane/hub.h"
#include "policy/policy.h"

namespace airlock::dp {
namespace {

using airlock::policy::Family;

Prefix to_dp_prefix(const airlock::policy::IpPrefix& p) {
  Prefix out{};
  out.family = p.family == Family::V6 ? 6 : 4;
  out.addr = p.addr;
  out.len = p.len;
  return out;
}

std::vector<std::string> strings_of(
    const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
  std::vector<std::string> out;
  if (v != nullptr) {
    for (const auto* s : *v) out.emplace_back(s->str());
  }
  return out;
}

std::string str_or_empty(const flatbuffers::String* s) {
  return s ? s->str() : std::string();
}

}  // namespace

std::unique_ptr<PolicyBuild> Hub::begin_policy(std::span<const uint8_t> bytes, std::string* error) {
  if (policy_build_open_) {
    *error = "another policy is still being compiled";
    return nullptr;
  }
  auto loaded = airlock::policy::load_policy(bytes, error);
  if (!loaded) return nullptr;
  const auto* root = loaded->root();
  const PolicySnapshot* running = policy_.load(std::memory_order_acquire);
  if (running != nullptr && root->version() < running->version) {
    *error = "policy version " + std::to_string(root->version()) + " is older than the running " +
             std::to_string(running->version);
    return nullptr;
  }
  size_t n_peers = root->peers() ? root->peers()->size() : 0;
  size_t n_rules = root->rules() ? root->rules()->size() : 0;
  if (n_rules > cfg_.max_rules) {
    *error = "policy has " + std::to_string(n_rules) + " rules; this data plane holds at most " +
             std::to_string(cfg_.max_rules) + " (--max-rules)";
    return nullptr;
  }

  auto build = std::make_unique<PolicyBuild>(std::move(*loaded));
  root = build->loaded_.root();
  if (running != nullptr) build->running_acl_ = running->acl.contexts();
  auto fail = [&](std::string message) {
    for (uint32_t s : build->allocated_) peers_.forget(s);
    *error = std::move(message);
    return nullptr;
  };
  build->fresh_.resize(n_peers);
  for (size_t i = 0; i < n_peers; ++i) {
    crypto::Key key = airlock::policy::key_bytes(*root->peers()->Get(i)->public_key());
    auto slot = peers_.find(key);
    if (slot && !peers_.at(*slot).active.load(std::memory_order_relaxed)) {
      build->fresh_[i] = true;  // removed by an earlier policy, not yet reclaimed
    } else if (!slot) {
      slot = peers_.allocate(key);
      if (!slot) {
        return fail("peers[" + std::to_string(i) + "]: more than " +
                    std::to_string(cfg_.max_peers) + " peers (--max-peers)");
      }
      build->fresh_[i] = true;
      build->allocated_.push_back(*slot);
    }
    build->slots_.push_back(*slot);
  }

  // Each peer's allowed IPs, parsed once: their count per family sizes the LPM tables, which
  // reserve room per rule (IPv6: 13 tbl8 groups each) and are zeroed on creation and on free.
  build->peer_prefixes_.resize(n_peers);
  for (size_t i = 0; i < n_peers; ++i) {
    const auto* p = root->peers()->Get(i);
    const auto* ips = p->allowed_ips();
    for (size_t j = 0; ips != nullptr && j < ips->size(); ++j) {
      std::string why;
      auto ip = airlock::policy::to_ip_prefix(*ips->Get(j), &why);
      if (!ip) {
        return fail("peers[" + std::to_string(i) + "].allowed_ips[" + std::to_string(j) +
                    "]: " + why);
      }
      const Prefix prefix = to_dp_prefix(*ip);
      // A /0 lives outside the tables.
      if (prefix.len != 0) ++(prefix.family == 4 ? build->v4_prefixes_ : build->v6_prefixes_);
      build->peer_prefixes_[i].push_back(prefix);
    }
    AclIdentity id;
    id.peer_slot = build->slots_[i];
    const auto* ident = p->identity();
    id.user = ident ? str_or_empty(ident->user()) : "";
    id.device = ident ? str_or_empty(ident->device()) : "";
    id.tags = ident ? strings_of(ident->tags()) : std::vector<std::string>{};
    id.groups = ident ? strings_of(ident->groups()) : std::vector<std::string>{};
    id.public_key_b64 =
        airlock::policy::encode_key_base64(airlock::policy::key_bytes(*p->public_key()));
    build->identities_.push_back(std::move(id));
  }

  for (size_t i = 0; i < n_rules; ++i) {
    const auto* r = root->rules()->Get(i);
    AclRule rule;
    rule.name = str_or_empty(r->name());
    rule.sources = strings_of(r->sources());
    if (r->destinations() != nullptr) {
      for (const auto* d : *r->destinations()) {
        std::string why;
        auto ip = airlock::policy::to_ip_prefix(*d, &why);
        if (!ip) return fail(why);
        rule.destinations.push_back(to_dp_prefix(*ip));
      }
    }
    rule.protocol = r->protocol();
    rule.port_low = r->port_low();
    rule.port_high = r->port_high();
    rule.action = static_cast<AclAction>(r->action());
    build->rule_names_.push_back(rule.name.empty() ? "rule-" + std::to_string(i) : rule.name);
    build->rules_.push_back(std::move(rule));
  }
  policy_build_open_ = true;
  return build;
}

bool PolicyBuild::compile() {
  allowed_ = AllowedIps::create(v4_prefixes_, v6_prefixes_, &error_);
  if (!allowed_) return false;
  for (size_t i = 0; i < peer_prefixes_.size(); ++i) {
    for (size_t j = 0; j < peer_prefixes_[i].size(); ++j) {
      std::string why;
      if (!allowed_->add(peer_prefixes_[i][j], slots_[i], &why)) {
        error_ = "peers[" + std::to_string(i) + "].allowed_ips[" + std::to_string(j) + "]: " + why;
        allowed_.reset();
        return false;
      }
    }
  }
  acl_ = AclTable::compile(identities_, rules_, &error_, std::move(running_acl_));
  if (!acl_) {
    allowed_.reset();
    return false;
  }
  return true;
}

bool Hub::finish_policy(std::unique_ptr<PolicyBuild> build, std::string* error) {
  policy_build_open_ = false;
  if (!build->allowed_ || !build->acl_) {
    for (uint32_t s : build->allocated_) peers_.forget(s);
    *error = build->error_.empty() ? "policy was not compiled" : build->error_;
    return false;
  }
  // Everything that can fail has succeeded; from here on the policy is accepted.
  const auto* root = build->loaded_.root();
  const std::vector<uint32_t>& slots = build->slots_;
  std::unordered_set<uint32_t> keep(slots.begin(), slots.end());
  for (size_t i = 0; i < slots.size(); ++i) {
    configure_peer(slots[i], *root->peers()->Get(i), build->fresh_[i]);
  }
  auto snapshot = std::make_unique<PolicySnapshot>(PolicySnapshot{
      root->version(), std::move(*build->allowed_), std::move(*build->acl_), build->rule_names_});
  PolicySnapshot* old = policy_.exchange(snapshot.release(), std::memory_order_acq_rel);
  std::vector<uint32_t> removed;
  for (uint32_t s : active_slots_) {
    if (!keep.count(s)) removed.push_back(s);
  }
  active_slots_ = slots;
  for (uint32_t s : removed) deactivate_peer(s);
  defer_retired();  // whatever an earlier swap left is freed on its own schedule
  retired_snapshot_.reset(old);
  defer_retired();

  std::vector<std::string_view> names(build->rule_names_.begin(), build->rule_names_.end());
  stats_->set_rule_names(root->version(), names);
  return true;
}

bool Hub::apply_policy(std::span<const uint8_t> bytes, std::string* error) {
  std::unique_ptr<PolicyBuild> build = begin_policy(bytes, error);
  if (!build) return false;
  build->compile();
  return finish_policy(std::move(build), error);
}

void Hub::configure_peer(uint32_t slot, const airlock::policy::Peer& p, bool fresh) {
  PeerState& peer = peers_.at(slot);
  crypto::Key pub = airlock::policy::key_bytes(*p.public_key());
  crypto::Key psk{};
  if (p.preshared_key() != nullptr) psk = airlock::policy::key_bytes(*p.preshared_key());
  if (fresh) {
    peer.generation.fetch_add(1, std::memory_order_release);
    zero_peer_keys(slot);
    peer.handshake = Handshake{};
    peer.timers = TimerState{};
    peer.endpoint.store(Endpoint{});
    peer.last_rx_data_ns = peer.last_tx_data_ns = peer.last_rx_auth_ns = peer.last_tx_auth_ns = 0;
    peer.want_handshake.store(false);
    peer.last_handshake_unix_ns = 0;
    peer.cookie_maker.emplace(pub);
    peer.keys = make_peer_keys_deferred(pub, psk);
  } else if (peer.keys.psk != psk) {
    // Takes effect with the next handshake; the running session stays valid.
    peer.keys = make_peer_keys_deferred(pub, psk);
  }
  sodium_memzero(psk.data(), psk.size());
  const auto* ident = p.identity();
  peer.user = ident ? str_or_empty(ident->user()) : "";
  peer.device = ident ? str_or_empty(ident->device()) : "";
  peer.persistent_keepalive_s = p.persistent_keepalive();
  peer.has_configured_endpoint = false;
  if (p.endpoint() != nullptr) {
    auto ep = airlock::policy::to_ip_endpoint(*p.endpoint());
    if (ep && ep->family == Family::V4) {
      peer.has_configured_endpoint = true;
      std::memcpy(&peer.configured_endpoint.ipv4_be, ep->addr.data(), 4);
      peer.configured_endpoint.port_be = rte_cpu_to_be_16(ep->port);
      // A learned endpoint wins over the configured one (roaming, whitepaper §2.1).
      if (!peer.endpoint.load().known()) {
        Endpoint e = peer.configured_endpoint;
        e.mac = neighbor_mac(e.ipv4_be);
        peer.endpoint.store(e);
      }
    }
  }
  // The counters' baseline is taken before the peer can carry traffic.
  if (fresh) stats_->clear_peer(slot);
  publish_peer_record(slot);
  peer.active.store(true, std::memory_order_release);
}

void Hub::deactivate_peer(uint32_t slot) {
  PeerState& peer = peers_.at(slot);
  peer.active.store(false, std::memory_order_release);
  zero_peer_keys(slot);
  peer.cookie_maker.reset();
  stats_->clear_peer(slot);
  retired_slots_.push_back(slot);
}

}  // namespace airlock::dp
