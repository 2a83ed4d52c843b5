#include "dataplane/static_sessions.h"

#include <arpa/inet.h>
#include <rte_byteorder.h>
#include <rte_ether.h>

#include <charconv>
#include <fstream>
#include <set>
#include <unordered_map>

#include "dataplane/hub.h"
#include "dataplane/noise.h"
#include "policy/policy.h"

namespace airlock::dp {
namespace {

constexpr size_t kFields = 7;
// Far more than any benchmark file; bounds what a wrong path (say, a disk image) can cost.
constexpr std::streamoff kMaxFileBytes = 64 << 20;

std::vector<std::string_view> split_blanks(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

bool parse_index(std::string_view s, uint32_t* out) {
  int base = 10;
  if (s.starts_with("0x") || s.starts_with("0X")) {
    s.remove_prefix(2);
    base = 16;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

bool parse_key(std::string_view s, crypto::Key* out) {
  auto key = policy::decode_key_base64(s);
  if (!key) return false;
  *out = *key;
  crypto::wipe(*key);
  return true;
}

bool parse_endpoint(std::string_view s, Endpoint* out) {
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return false;
  in_addr a{};
  if (inet_pton(AF_INET, std::string(s.substr(0, colon)).c_str(), &a) != 1 || a.s_addr == 0) {
    return false;
  }
  const std::string_view port = s.substr(colon + 1);
  uint16_t p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || p == 0) return false;
  out->ipv4_be = a.s_addr;
  out->port_be = rte_cpu_to_be_16(p);
  return true;
}

// rte_ether_unformat_addr also takes the xxxx:xxxx:xxxx form; only the usual one is meant here.
bool parse_mac(std::string_view s, rte_ether_addr* out) {
  return s.size() == RTE_ETHER_ADDR_FMT_SIZE - 1 &&
         rte_ether_unformat_addr(std::string(s).c_str(), out) == 0;
}

// What is wrong with one line's fields, or empty when `out` is filled.
std::string parse_fields(std::span<const std::string_view> f, StaticSession* out) {
  if (f.size() != kFields) {
    return "expected " + std::to_string(kFields) +
           " fields (peer public key, local index, remote index, receive key, send key, "
           "endpoint IPv4:port, endpoint MAC), found " +
           std::to_string(f.size());
  }
  if (!parse_key(f[0], &out->peer_public)) return "peer public key is not a base64 32-byte key";
  if (!parse_index(f[1], &out->local_index) || out->local_index == 0) {
    return "local index must be a non-zero 32-bit number";
  }
  if ((out->local_index & (kIndexTableSize - 1)) == 0) {
    return "local index must not have its low 16 bits all zero (that entry stays unused)";
  }
  if (!parse_index(f[2], &out->remote_index) || out->remote_index == 0) {
    return "remote index must be a non-zero 32-bit number";
  }
  if (!parse_key(f[3], &out->receive)) return "receive key is not a base64 32-byte key";
  if (!parse_key(f[4], &out->send)) return "send key is not a base64 32-byte key";
  if (!parse_endpoint(f[5], &out->endpoint)) {
    return "endpoint must be IPV4:PORT with a non-zero address and port";
  }
  if (!parse_mac(f[6], &out->endpoint.mac)) return "endpoint MAC must be xx:xx:xx:xx:xx:xx";
  return {};
}

}  // namespace

StaticSession::~StaticSession() {
  crypto::wipe(receive);
  crypto::wipe(send);
}

std::optional<std::vector<StaticSession>> parse_static_sessions(std::string_view text,
                                                                std::string* error) {
  std::vector<StaticSession> sessions;
  std::set<crypto::Key> peers;
  std::unordered_map<uint32_t, int> entries;  // index-table entry -> line using it
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    const auto fields = split_blanks(line);
    if (fields.empty() || fields[0].starts_with('#')) continue;
    StaticSession s;
    s.line = line_no;
    std::string why = parse_fields(fields, &s);
    if (why.empty() && !peers.insert(s.peer_public).second) why = "second session for this peer";
    if (why.empty()) {
      auto [it, fresh] = entries.try_emplace(s.local_index & (kIndexTableSize - 1), line_no);
      if (!fresh) {
        why = "local index shares its low 16 bits (index-table entry) with line " +
              std::to_string(it->second);
      }
    }
    if (!why.empty()) {
      *error = "line " + std::to_string(line_no) + ": " + why;
      return std::nullopt;
    }
    sessions.push_back(std::move(s));
  }
  if (sessions.empty()) {
    *error = "no sessions (only blank or comment lines)";
    return std::nullopt;
  }
  return sessions;
}

std::optional<std::vector<StaticSession>> read_static_sessions(const std::string& path,
                                                               std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open";
    return std::nullopt;
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || size > kMaxFileBytes) {
    *error = "not a readable file of at most " + std::to_string(kMaxFileBytes) + " bytes";
    return std::nullopt;
  }
  in.seekg(0);
  std::string text(static_cast<size_t>(size), '\0');
  if (!in.read(text.data(), size)) {
    *error = "read failed";
    crypto::wipe(std::span(reinterpret_cast<uint8_t*>(text.data()), text.size()));
    return std::nullopt;
  }
  auto sessions = parse_static_sessions(text, error);
  crypto::wipe(std::span(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  return sessions;
}

bool install_static_sessions(Hub& hub, std::span<const StaticSession> sessions,
                             std::string* error) {
  for (const StaticSession& s : sessions) {
    const auto slot = hub.slot_of(s.peer_public);
    if (!slot) {
      *error = "line " + std::to_string(s.line) + ": peer " +
               policy::encode_key_base64(s.peer_public) + " is not in the running policy";
      return false;
    }
    SessionKeys keys;
    keys.send = s.send;
    keys.receive = s.receive;
    keys.local_index = s.local_index;
    keys.remote_index = s.remote_index;
    if (!hub.install_session(*slot, keys, s.endpoint)) {
      *error = "line " + std::to_string(s.line) +
               ": cannot install the session (its local index is taken, or no keypair is free)";
      return false;
    }
  }
  return true;
}

}  // namespace airlock::dp
