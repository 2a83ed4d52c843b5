#include "control/ctl/peer_add.h"

#include <sodium.h>

#include <algorithm>
#include <bit>

#include "control/admin/policy_text.h"

namespace airlock::control::ctl {
namespace {

uint32_t v4_value(const policy::IpPrefix& p) {
  return uint32_t{p.addr[0]} << 24 | uint32_t{p.addr[1]} << 16 | uint32_t{p.addr[2]} << 8 |
         uint32_t{p.addr[3]};
}

policy::IpPrefix v4_host(uint32_t value) {
  policy::IpPrefix p;
  p.family = policy::Family::V4;
  p.addr[0] = static_cast<uint8_t>(value >> 24);
  p.addr[1] = static_cast<uint8_t>(value >> 16);
  p.addr[2] = static_cast<uint8_t>(value >> 8);
  p.addr[3] = static_cast<uint8_t>(value);
  p.len = 32;
  return p;
}

uint32_t mask_of(unsigned len) {
  return len == 0 ? 0 : ~uint32_t{0} << (32 - len);
}

bool overlaps(const policy::IpPrefix& a, const policy::IpPrefix& b) {
  return a.family == b.family && (policy::prefix_contains(a, b) || policy::prefix_contains(b, a));
}

// Every valid prefix a peer owns, with the peer's user for messages.
std::vector<std::pair<policy::IpPrefix, std::string>> peer_prefixes(const policy::Document& doc) {
  std::vector<std::pair<policy::IpPrefix, std::string>> out;
  for (const policy::PeerSpec& peer : doc.peers) {
    for (const policy::PrefixSpec& spec : peer.allowed_ips) {
      if (auto prefix = policy::prefix_of(spec)) out.emplace_back(*prefix, peer.user);
    }
  }
  return out;
}

}  // namespace

KeyPair::~KeyPair() {
  sodium_memzero(private_key.data(), private_key.size());
}

void generate_key_pair(KeyPair* pair) {
  if (sodium_init() < 0) std::abort();
  randombytes_buf(pair->private_key.data(), pair->private_key.size());
  pair->private_key[0] &= 248;
  pair->private_key[31] &= 127;
  pair->private_key[31] |= 64;
  crypto_scalarmult_base(pair->public_key.data(), pair->private_key.data());
}

std::optional<std::string> next_free_address(const policy::Document& document, std::string* error) {
  auto owned = peer_prefixes(document);
  std::vector<uint32_t> hosts;
  for (const auto& [prefix, user] : owned) {
    if (prefix.family == policy::Family::V4 && prefix.len == 32) hosts.push_back(v4_value(prefix));
  }
  if (hosts.empty()) {
    *error = "no peer has an IPv4 address to allocate next to; pass --address";
    return std::nullopt;
  }
  auto [low, high] = std::minmax_element(hosts.begin(), hosts.end());
  unsigned common = static_cast<unsigned>(std::countl_zero(*low ^ *high));
  unsigned len = std::min(common, 24u);
  uint32_t network = *low & mask_of(len);
  uint32_t broadcast = network | ~mask_of(len);
  for (uint64_t candidate = uint64_t{network} + 1; candidate < broadcast; ++candidate) {
    policy::IpPrefix host = v4_host(static_cast<uint32_t>(candidate));
    bool taken = std::any_of(owned.begin(), owned.end(),
                             [&](const auto& p) { return overlaps(p.first, host); }) ||
                 std::any_of(document.gateway.begin(), document.gateway.end(),
                             [&](const policy::IpPrefix& g) { return overlaps(g, host); });
    if (!taken) return policy::format_prefix(host);
  }
  policy::IpPrefix subnet = v4_host(network);
  subnet.len = static_cast<uint8_t>(len);
  *error = "no free address left in " + policy::format_prefix(subnet) + "; pass --address";
  return std::nullopt;
}

std::optional<PeerAdded> add_peer(std::string_view text, std::string_view file_name,
                                  const NewPeer& peer, const policy::Key& public_key,
                                  uint64_t min_version, std::string* error) {
  auto document = policy::parse_document(text, file_name, error);
  if (!document) return std::nullopt;

  PeerAdded added;
  if (peer.address) {
    std::string why;
    auto prefix = policy::parse_prefix(*peer.address, &why);
    if (!prefix) {
      *error = "--address " + *peer.address + ": " + why;
      return std::nullopt;
    }
    for (const auto& [owned, user] : peer_prefixes(*document)) {
      if (overlaps(owned, *prefix)) {
        *error = "--address " + *peer.address + " overlaps " + policy::format_prefix(owned) +
                 " of user " + user;
        return std::nullopt;
      }
    }
    added.address = policy::format_prefix(*prefix);
  } else {
    auto address = next_free_address(*document, error);
    if (!address) return std::nullopt;
    added.address = *address;
  }

  admin::PeerEntry entry{
      peer.user, peer.device, peer.tags, policy::encode_key_base64(public_key), {added.address}};
  std::string why;
  auto inserted = admin::insert_peer(text, entry, &why);
  if (!inserted) {
    *error = std::string(file_name) + ": " + why;
    return std::nullopt;
  }
  added.version = std::max(document->version, min_version) + 1;
  auto versioned = admin::set_version(*inserted, added.version, &why);
  if (!versioned) {
    *error = std::string(file_name) + ": " + why;
    return std::nullopt;
  }
  auto checked = policy::parse_document(*versioned, file_name, &why);
  if (!checked) {
    *error = "the policy with the new peer does not check: " + why;
    return std::nullopt;
  }
  if (!checked->identity_of_key(public_key)) {
    *error = std::string(file_name) + ": the new entry did not land in \"peers\"";
    return std::nullopt;
  }
  added.text = std::move(*versioned);
  return added;
}

std::string wg_quick_config(std::string_view name, const KeyPair& keys, std::string_view address,
                            const HubEndpoint& hub) {
  std::string allowed;
  for (const std::string& prefix : hub.gateway) allowed += (allowed.empty() ? "" : ", ") + prefix;
  std::string out = "# Airlock sandbox " + std::string(name) + "\n";
  out += "[Interface]\n";
  out += "PrivateKey = " + policy::encode_key_base64(keys.private_key) + "\n";
  out += "Address = " + std::string(address) + "\n";
  out += "\n[Peer]\n";
  out += "PublicKey = " + hub.public_key + "\n";
  out += "Endpoint = " + hub.endpoint + "\n";
  out += "AllowedIPs = " + allowed + "\n";
  out += "PersistentKeepalive = 25\n";
  return out;
}

}  // namespace airlock::control::ctl
