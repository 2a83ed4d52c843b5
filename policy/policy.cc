#include "policy/policy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>

namespace airlock::policy {
namespace {

// Policy -> peers -> Peer -> endpoint -> Prefix -> addr is the deepest path (6).
constexpr flatbuffers::uoffset_t kMaxDepth = 16;
// Tables may be shared by many offsets, so verification time is bounded by the table count, not by
// the buffer size; 8M covers ~1M peers with their prefixes.
constexpr flatbuffers::uoffset_t kMaxTables = 8 << 20;
constexpr size_t kMinBufferBytes = 8;  // root offset + file identifier

// nullopt = valid; otherwise "path: reason" relative to the checked object.
using Problem = std::optional<std::string>;

std::nullopt_t fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return std::nullopt;
}

bool reject(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}

std::string indexed(std::string_view field, size_t i) {
  return std::string(field) + "[" + std::to_string(i) + "]";
}

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

const char* family_name(Family family) {
  return family == Family::V6 ? "IPv6" : "IPv4";
}

struct IpAddress {
  Family family;
  std::array<uint8_t, 16> bytes{};
};

std::optional<IpAddress> parse_address(std::string_view text) {
  // inet_pton would stop at an embedded NUL and accept whatever follows it.
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  const std::string nul_terminated(text);
  IpAddress address{Family::V4};
  if (inet_pton(AF_INET, nul_terminated.c_str(), address.bytes.data()) == 1) return address;
  address.family = Family::V6;
  if (inet_pton(AF_INET6, nul_terminated.c_str(), address.bytes.data()) == 1) return address;
  return std::nullopt;
}

std::string format_address(Family family, const std::array<uint8_t, 16>& bytes) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == Family::V6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof(text));
  return text;
}

bool has_host_bits(const IpPrefix& prefix) {
  const size_t full_bytes = prefix.len / 8;
  const unsigned partial_bits = prefix.len % 8;
  for (size_t i = full_bytes; i < address_length(prefix.family); ++i) {
    const uint8_t host_mask = (i == full_bytes && partial_bits) ? (0xff >> partial_bits) : 0xff;
    if (prefix.addr[i] & host_mask) return true;
  }
  return false;
}

Problem prefix_problem(const IpPrefix& prefix) {
  const unsigned max = max_prefix_length(prefix.family);
  if (prefix.len > max) {
    return "prefix length " + std::to_string(prefix.len) + " exceeds " + std::to_string(max) +
           " for " + family_name(prefix.family);
  }
  if (has_host_bits(prefix)) {
    return format_prefix(prefix) + " has host bits set beyond /" + std::to_string(prefix.len) +
           " (the network is " + format_prefix(network_of(prefix)) + ")";
  }
  return std::nullopt;
}

bool is_valid_family(Family family) {
  return family >= Family::MIN && family <= Family::MAX;
}
bool is_valid_action(Action action) {
  return action >= Action::MIN && action <= Action::MAX;
}

template <typename T>
using OffsetVector = flatbuffers::Vector<flatbuffers::Offset<T>>;

Problem prefixes_problem(const OffsetVector<Prefix>* prefixes, std::string_view field) {
  if (!prefixes) return std::nullopt;
  std::string why;
  for (flatbuffers::uoffset_t i = 0; i < prefixes->size(); ++i) {
    if (!to_ip_prefix(*prefixes->Get(i), &why)) return indexed(field, i) + ": " + why;
  }
  return std::nullopt;
}

Problem name_problem(const flatbuffers::String* name, std::string_view field) {
  if (is_valid_name(name->string_view())) return std::nullopt;
  return std::string(field) + ": " + quoted(name->string_view()) +
         " is not a valid name (non-empty printable ASCII without whitespace)";
}

Problem names_problem(const OffsetVector<flatbuffers::String>* names, std::string_view field) {
  if (!names) return std::nullopt;
  for (flatbuffers::uoffset_t i = 0; i < names->size(); ++i) {
    if (auto problem = name_problem(names->Get(i), indexed(field, i))) return problem;
  }
  return std::nullopt;
}

Problem identity_problem(const IdentityTable* identity) {
  if (!identity || !identity->user() || identity->user()->size() == 0) {
    return "identity.user: missing or empty";
  }
  if (auto problem = name_problem(identity->user(), "identity.user")) return problem;
  if (identity->device()) {
    if (auto problem = name_problem(identity->device(), "identity.device")) return problem;
  }
  if (auto problem = names_problem(identity->tags(), "identity.tags")) return problem;
  return names_problem(identity->groups(), "identity.groups");
}

Problem endpoint_problem(const Endpoint* endpoint) {
  if (!endpoint) return std::nullopt;
  std::string why;
  if (!to_ip_endpoint(*endpoint, &why)) return "endpoint." + why;
  return std::nullopt;
}

Problem peer_problem(const Peer& peer) {
  if (!peer.public_key()) return "public_key: missing";
  const Key key = key_bytes(*peer.public_key());
  if (std::all_of(key.begin(), key.end(), [](uint8_t b) { return b == 0; })) {
    return "public_key: all-zero key";
  }
  if (auto problem = prefixes_problem(peer.allowed_ips(), "allowed_ips")) return problem;
  if (auto problem = identity_problem(peer.identity())) return problem;
  return endpoint_problem(peer.endpoint());
}

Problem sources_problem(const OffsetVector<flatbuffers::String>* sources) {
  if (!sources || sources->size() == 0) return "sources: empty (use \"*\" for any source)";
  std::string why;
  for (flatbuffers::uoffset_t i = 0; i < sources->size(); ++i) {
    if (!is_valid_selector(sources->Get(i)->string_view(), &why)) {
      return indexed("sources", i) + ": " + why;
    }
  }
  return std::nullopt;
}

Problem rule_problem(const Rule& rule) {
  if (!is_valid_action(rule.action())) {
    return "action: unknown value " + std::to_string(static_cast<unsigned>(rule.action()));
  }
  if (rule.port_low() > rule.port_high()) {
    return "port_low " + std::to_string(rule.port_low()) + " exceeds port_high " +
           std::to_string(rule.port_high());
  }
  if (auto problem = sources_problem(rule.sources())) return problem;
  return prefixes_problem(rule.destinations(), "destinations");
}

// Each allowed-IPs prefix routes to exactly one peer, and each key names exactly one peer.
class UniquenessChecker {
 public:
  Problem add(const Peer& peer, size_t index) {
    const auto [key_it, key_is_new] = keys_.try_emplace(key_bytes(*peer.public_key()), index);
    if (!key_is_new) return "public_key: same key as " + indexed("peers", key_it->second);
    if (!peer.allowed_ips()) return std::nullopt;
    for (flatbuffers::uoffset_t i = 0; i < peer.allowed_ips()->size(); ++i) {
      const IpPrefix prefix = *to_ip_prefix(*peer.allowed_ips()->Get(i));
      const auto [it, is_new] = prefixes_.try_emplace(prefix, index);
      if (!is_new) {
        return indexed("allowed_ips", i) + ": " + format_prefix(prefix) +
               " is already assigned to " + indexed("peers", it->second);
      }
    }
    return std::nullopt;
  }

 private:
  std::map<Key, size_t> keys_;
  std::map<IpPrefix, size_t> prefixes_;
};

Problem peers_problem(const OffsetVector<Peer>* peers) {
  if (!peers) return std::nullopt;
  UniquenessChecker uniqueness;
  for (flatbuffers::uoffset_t i = 0; i < peers->size(); ++i) {
    const Peer& peer = *peers->Get(i);
    auto problem = peer_problem(peer);
    if (!problem) problem = uniqueness.add(peer, i);
    if (problem) return indexed("peers", i) + "." + *problem;
  }
  return std::nullopt;
}

Problem rules_problem(const OffsetVector<Rule>* rules) {
  if (!rules) return std::nullopt;
  for (flatbuffers::uoffset_t i = 0; i < rules->size(); ++i) {
    if (auto problem = rule_problem(*rules->Get(i))) return indexed("rules", i) + "." + *problem;
  }
  return std::nullopt;
}

Problem policy_problem(const Policy& policy) {
  if (policy.schema_version() != kSchemaVersion) {
    return "schema_version: " + std::to_string(policy.schema_version()) +
           " is not supported (this build reads " + std::to_string(kSchemaVersion) + ")";
  }
  if (auto problem = prefixes_problem(policy.gateway(), "gateway")) return problem;
  if (auto problem = peers_problem(policy.peers())) return problem;
  return rules_problem(policy.rules());
}

struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

namespace detail {
void wipe(void* data, size_t size) {
  sodium_memzero(data, size);
}
}  // namespace detail

std::optional<unsigned> parse_decimal(std::string_view text, unsigned max) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

std::optional<IpPrefix> parse_prefix(std::string_view text, std::string* error) {
  const size_t slash = text.find('/');
  const auto address = parse_address(text.substr(0, slash));
  if (!address) return fail(error, quoted(text) + " is not an IPv4 or IPv6 address or prefix");
  IpPrefix prefix{address->family, address->bytes, max_prefix_length(address->family)};
  if (slash != std::string_view::npos) {
    const auto len = parse_decimal(text.substr(slash + 1), 255);
    if (!len) return fail(error, quoted(text) + " has an invalid prefix length");
    prefix.len = static_cast<uint8_t>(*len);
  }
  if (auto problem = prefix_problem(prefix)) return fail(error, *problem);
  return prefix;
}

std::string format_prefix(const IpPrefix& prefix) {
  return format_address(prefix.family, prefix.addr) + "/" + std::to_string(prefix.len);
}

IpPrefix network_of(IpPrefix prefix) {
  const size_t full_bytes = prefix.len / 8;
  const unsigned partial_bits = prefix.len % 8;
  for (size_t i = full_bytes; i < prefix.addr.size(); ++i) {
    prefix.addr[i] &= (i == full_bytes && partial_bits) ? (0xff << (8 - partial_bits)) : 0;
  }
  return prefix;
}

bool prefix_contains(const IpPrefix& prefix, const IpPrefix& address) {
  if (prefix.family != address.family || prefix.len > address.len) return false;
  IpPrefix narrowed = address;
  narrowed.len = prefix.len;
  return network_of(narrowed) == prefix;
}

std::optional<IpEndpoint> parse_endpoint(std::string_view text, std::string* error) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const size_t close = text.find("]:");
    if (close == std::string_view::npos) return fail(error, quoted(text) + " lacks \"]:PORT\"");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos) {
      return fail(error, quoted(text) + " is not ADDRESS:PORT (IPv6 needs [ADDRESS]:PORT)");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  const auto address = parse_address(host);
  if (!address || (address->family == Family::V4) == text.starts_with('[')) {
    return fail(error, quoted(text) + " has an invalid address");
  }
  const auto port_number = parse_decimal(port, 65535);
  if (!port_number || *port_number == 0) {
    return fail(error, quoted(text) + " has an invalid port (1-65535)");
  }
  return IpEndpoint{address->family, address->bytes, static_cast<uint16_t>(*port_number)};
}

std::string format_endpoint(const IpEndpoint& endpoint) {
  const std::string address = format_address(endpoint.family, endpoint.addr);
  const std::string port = std::to_string(endpoint.port);
  return endpoint.family == Family::V6 ? "[" + address + "]:" + port : address + ":" + port;
}

std::optional<Key> decode_key_base64(std::string_view text) {
  Key key{};
  size_t key_len = 0;
  const char* end = nullptr;
  const int rc = sodium_base642bin(key.data(), key.size(), text.data(), text.size(), nullptr,
                                   &key_len, &end, sodium_base64_VARIANT_ORIGINAL);
  if (rc != 0 || key_len != key.size() || end != text.data() + text.size()) {
    sodium_memzero(key.data(), key.size());
    return std::nullopt;
  }
  return key;
}

std::string encode_key_base64(std::span<const uint8_t, kKeyBytes> key) {
  constexpr size_t kEncodedSize =
      sodium_base64_ENCODED_LEN(kKeyBytes, sodium_base64_VARIANT_ORIGINAL);
  char text[kEncodedSize];
  sodium_bin2base64(text, sizeof(text), key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
  std::string encoded(text);
  sodium_memzero(text, sizeof(text));
  return encoded;
}

bool is_valid_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return c > ' ' && c <= '~';  // printable ASCII, not space
  });
}

bool is_valid_selector(std::string_view selector, std::string* error) {
  if (selector == "*") return true;
  const size_t colon = selector.find(':');
  if (colon == std::string_view::npos) {
    if (is_valid_name(selector)) return true;
    return reject(error, quoted(selector) +
                             " is not a valid user name (non-empty printable ASCII without "
                             "whitespace)");
  }
  const std::string_view kind = selector.substr(0, colon);
  const std::string_view argument = selector.substr(colon + 1);
  if (kind == "peer") {
    if (decode_key_base64(argument)) return true;
    return reject(error, quoted(selector) + ": peer: needs a base64-encoded 32-byte public key");
  }
  if (kind != "user" && kind != "group" && kind != "tag" && kind != "device") {
    return reject(error, quoted(selector) + ": unknown selector kind " + quoted(kind) +
                             " (expected user, group, tag, device or peer)");
  }
  if (is_valid_name(argument)) return true;
  return reject(error,
                quoted(selector) + ": name must be non-empty printable ASCII without whitespace");
}

std::optional<IpPrefix> to_ip_prefix(const Prefix& prefix, std::string* error) {
  if (!is_valid_family(prefix.family())) {
    return fail(error,
                "unknown address family " + std::to_string(static_cast<unsigned>(prefix.family())));
  }
  const size_t expected = address_length(prefix.family());
  if (!prefix.addr() || prefix.addr()->size() != expected) {
    const size_t actual = prefix.addr() ? prefix.addr()->size() : 0;
    return fail(error, std::string(family_name(prefix.family())) + " address has " +
                           std::to_string(actual) + " bytes, expected " + std::to_string(expected));
  }
  IpPrefix parsed{prefix.family(), {}, prefix.len()};
  std::copy(prefix.addr()->begin(), prefix.addr()->end(), parsed.addr.begin());
  if (auto problem = prefix_problem(parsed)) return fail(error, *problem);
  return parsed;
}

std::optional<IpEndpoint> to_ip_endpoint(const Endpoint& endpoint, std::string* error) {
  if (!endpoint.addr()) return fail(error, "addr: missing");
  std::string why;
  const auto address = to_ip_prefix(*endpoint.addr(), &why);
  if (!address) return fail(error, "addr: " + why);
  if (address->len != max_prefix_length(address->family)) {
    return fail(error, "addr: " + format_prefix(*address) + " is not a single address");
  }
  if (endpoint.port() == 0) return fail(error, "port: must not be 0");
  return IpEndpoint{address->family, address->addr, endpoint.port()};
}

Key key_bytes(const Key32& key) {
  Key bytes;
  std::copy(key.b()->begin(), key.b()->end(), bytes.begin());
  return bytes;
}

std::optional<LoadedPolicy> load_policy(std::span<const uint8_t> bytes, std::string* error) {
  if (bytes.size() > kMaxPolicyBytes) {
    return fail(error, "policy is " + std::to_string(bytes.size()) + " bytes, the limit is " +
                           std::to_string(kMaxPolicyBytes));
  }
  if (bytes.size() < kMinBufferBytes) return fail(error, "policy buffer is too short");
  // The verifier checks alignment relative to the buffer start, so verify an 8-byte aligned copy.
  LoadedPolicy::Storage storage((bytes.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t));
  std::memcpy(storage.data(), bytes.data(), bytes.size());
  const auto* data = reinterpret_cast<const uint8_t*>(storage.data());
  if (!PolicyBufferHasIdentifier(data)) {
    return fail(error, std::string("file identifier is not \"") + PolicyIdentifier() +
                           "\" (not an airlock policy)");
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = kMaxTables;
  options.check_alignment = true;
  flatbuffers::Verifier verifier(data, bytes.size(), options);
  if (!VerifyPolicyBuffer(verifier)) {
    return fail(error, "policy buffer failed flatbuffers verification (truncated or corrupt)");
  }
  if (auto problem = policy_problem(*GetPolicy(data))) return fail(error, *problem);
  return LoadedPolicy(std::move(storage), bytes.size());
}

std::optional<std::vector<uint8_t>> read_file(const std::string& path, std::string* error) {
  const FileDescriptor file{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) return fail(error, path + ": " + std::strerror(errno));
  std::vector<uint8_t> contents;
  constexpr size_t kChunk = 64 << 10;
  for (;;) {
    const size_t used = contents.size();
    contents.resize(used + kChunk);
    const ssize_t n = read(file.fd, contents.data() + used, kChunk);
    if (n < 0 && errno == EINTR) {
      contents.resize(used);
      continue;
    }
    if (n < 0) return fail(error, path + ": " + std::strerror(errno));
    contents.resize(used + static_cast<size_t>(n));
    if (n == 0) return contents;
    if (contents.size() > kMaxPolicyBytes) {
      return fail(error, path + ": larger than " + std::to_string(kMaxPolicyBytes) + " bytes");
    }
  }
}

}  // namespace airlock::policy
