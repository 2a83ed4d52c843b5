#include "policy/builder.h"

#include <algorithm>
#include <utility>

namespace airlock::policy {
namespace {

using flatbuffers::Offset;
using flatbuffers::Vector;

std::nullopt_t fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return std::nullopt;
}

std::string indexed(const std::string& field, size_t i) {
  return field + "[" + std::to_string(i) + "]";
}

bool is_absent(const KeySpec& spec) {
  const auto* text = std::get_if<std::string>(&spec);
  return text && text->empty();
}

std::optional<Key> key_from_spec(const KeySpec& spec, const std::string& path, std::string* error) {
  if (const auto* raw = std::get_if<Key>(&spec)) return *raw;
  auto key = decode_key_base64(std::get<std::string>(spec));
  if (!key) return fail(error, path + ": not a base64-encoded 32-byte key");
  return key;
}

// The buffer under construction holds preshared keys: wipe every block the builder releases.
class WipingAllocator : public flatbuffers::DefaultAllocator {
 public:
  void deallocate(uint8_t* p, size_t size) override {
    detail::wipe(p, size);
    DefaultAllocator::deallocate(p, size);
  }
};

// Serializes specs; each step either returns the offset of what it wrote or sets *error (with the
// field path) and returns nullopt.
class BufferWriter {
 public:
  explicit BufferWriter(std::string* error) : error_(error) {}

  std::optional<std::vector<uint8_t>> policy(uint32_t schema_version, uint64_t version,
                                             const std::vector<PrefixSpec>& gateway,
                                             const std::vector<PeerSpec>& peers,
                                             const std::vector<RuleSpec>& rules) {
    const auto gateway_offset = each(gateway, "gateway", &BufferWriter::prefix);
    if (!gateway_offset) return std::nullopt;
    const auto peers_offset = each(peers, "peers", &BufferWriter::peer);
    if (!peers_offset) return std::nullopt;
    const auto rules_offset = each(rules, "rules", &BufferWriter::rule);
    if (!rules_offset) return std::nullopt;
    FinishPolicyBuffer(fbb_, CreatePolicy(fbb_, schema_version, version, *peers_offset,
                                          *rules_offset, *gateway_offset));
    return std::vector<uint8_t>(fbb_.GetBufferPointer(), fbb_.GetBufferPointer() + fbb_.GetSize());
  }

 private:
  template <typename T>
  using Written = std::optional<Offset<T>>;

  Written<Prefix> prefix(const PrefixSpec& spec, const std::string& path) {
    if (const auto* raw = std::get_if<RawPrefix>(&spec)) {
      return CreatePrefix(fbb_, raw->family, fbb_.CreateVector(raw->addr), raw->len);
    }
    std::string why;
    const auto parsed = parse_prefix(std::get<std::string>(spec), &why);
    if (!parsed) return fail(error_, path + ": " + why);
    return full_prefix(*parsed);
  }

  Written<Endpoint> endpoint(const EndpointSpec& spec, const std::string& path) {
    if (const auto* raw = std::get_if<RawEndpoint>(&spec)) {
      const auto addr = prefix(raw->addr, path + ".addr");
      if (!addr) return std::nullopt;
      return CreateEndpoint(fbb_, *addr, raw->port);
    }
    std::string why;
    const auto parsed = parse_endpoint(std::get<std::string>(spec), &why);
    if (!parsed) return fail(error_, path + ": " + why);
    const IpPrefix address{parsed->family, parsed->addr, max_prefix_length(parsed->family)};
    return CreateEndpoint(fbb_, full_prefix(address), parsed->port);
  }

  Offset<IdentityTable> identity(const PeerSpec& peer) {
    const auto user = fbb_.CreateString(peer.user);
    const auto device = peer.device.empty() ? 0 : fbb_.CreateString(peer.device);
    return CreateIdentity(fbb_, user, device, strings(peer.tags), strings(peer.groups));
  }

  Written<Peer> peer(const PeerSpec& spec, const std::string& path) {
    const auto allowed_ips = each(spec.allowed_ips, path + ".allowed_ips", &BufferWriter::prefix);
    if (!allowed_ips) return std::nullopt;
    Offset<Endpoint> endpoint_offset;
    if (spec.endpoint) {
      const auto written = endpoint(*spec.endpoint, path + ".endpoint");
      if (!written) return std::nullopt;
      endpoint_offset = *written;
    }
    const auto identity_offset = identity(spec);
    std::optional<Key32> public_key;
    if (!is_absent(spec.public_key)) {
      const auto key = key_from_spec(spec.public_key, path + ".public_key", error_);
      if (!key) return std::nullopt;
      public_key.emplace(flatbuffers::make_span(*key));
    }
    std::optional<Key32> preshared_key;
    if (spec.preshared_key && !is_absent(*spec.preshared_key)) {
      auto key = key_from_spec(*spec.preshared_key, path + ".preshared_key", error_);
      if (!key) return std::nullopt;
      preshared_key.emplace(flatbuffers::make_span(*key));
      detail::wipe(key->data(), key->size());
    }
    const auto written = CreatePeer(fbb_, public_key ? &*public_key : nullptr,
                                    preshared_key ? &*preshared_key : nullptr, *allowed_ips,
                                    identity_offset, endpoint_offset, spec.persistent_keepalive);
    if (preshared_key) detail::wipe(&*preshared_key, sizeof(Key32));
    return written;
  }

  Written<Rule> rule(const RuleSpec& spec, const std::string& path) {
    const auto destinations =
        each(spec.destinations, path + ".destinations", &BufferWriter::prefix);
    if (!destinations) return std::nullopt;
    const auto name = spec.name.empty() ? 0 : fbb_.CreateString(spec.name);
    return CreateRule(fbb_, name, strings(spec.sources), *destinations, spec.protocol,
                      spec.port_low, spec.port_high, spec.action);
  }

  // Writes a vector of whatever `write` produces. Empty lists are left out, which the schema reads
  // as empty.
  template <typename Spec, typename T>
  std::optional<Offset<Vector<Offset<T>>>> each(
      const std::vector<Spec>& specs, const std::string& field,
      Written<T> (BufferWriter::*write)(const Spec&, const std::string&)) {
    if (specs.empty()) return Offset<Vector<Offset<T>>>();
    std::vector<Offset<T>> offsets;
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto offset = (this->*write)(specs[i], indexed(field, i));
      if (!offset) return std::nullopt;
      offsets.push_back(*offset);
    }
    return fbb_.CreateVector(offsets);
  }

  Offset<Prefix> full_prefix(const IpPrefix& prefix) {
    const auto addr = fbb_.CreateVector(prefix.addr.data(), address_length(prefix.family));
    return CreatePrefix(fbb_, prefix.family, addr, prefix.len);
  }

  Offset<Vector<Offset<flatbuffers::String>>> strings(const std::vector<std::string>& values) {
    return values.empty() ? 0 : fbb_.CreateVectorOfStrings(values);
  }

  std::string* error_;
  WipingAllocator allocator_;
  flatbuffers::FlatBufferBuilder fbb_{1024, &allocator_};
};

}  // namespace

std::optional<IpPrefix> prefix_of(const PrefixSpec& spec) {
  if (const auto* text = std::get_if<std::string>(&spec)) return parse_prefix(*text);
  const RawPrefix& raw = std::get<RawPrefix>(spec);
  if ((raw.family != Family::V4 && raw.family != Family::V6) ||
      raw.addr.size() != address_length(raw.family) || raw.len > max_prefix_length(raw.family)) {
    return std::nullopt;
  }
  IpPrefix prefix{raw.family, {}, raw.len};
  std::copy(raw.addr.begin(), raw.addr.end(), prefix.addr.begin());
  // A prefix contains itself only when no host bits are set beyond its length.
  if (!prefix_contains(prefix, prefix)) return std::nullopt;
  return prefix;
}

PolicyBuilder& PolicyBuilder::version(uint64_t version) {
  version_ = version;
  return *this;
}

PolicyBuilder& PolicyBuilder::schema_version(uint32_t schema_version) {
  schema_version_ = schema_version;
  return *this;
}

PolicyBuilder& PolicyBuilder::gateway(PrefixSpec prefix) {
  gateway_.push_back(std::move(prefix));
  return *this;
}

PolicyBuilder& PolicyBuilder::add_peer(PeerSpec peer) {
  peers_.push_back(std::move(peer));
  return *this;
}

PolicyBuilder& PolicyBuilder::add_rule(RuleSpec rule) {
  rules_.push_back(std::move(rule));
  return *this;
}

std::optional<std::vector<uint8_t>> PolicyBuilder::finish_unchecked(std::string* error) const {
  return BufferWriter(error).policy(schema_version_, version_, gateway_, peers_, rules_);
}

std::optional<std::vector<uint8_t>> PolicyBuilder::finish(std::string* error) const {
  auto bytes = finish_unchecked(error);
  if (!bytes) return std::nullopt;
  if (!load_policy(*bytes, error)) {
    detail::wipe(bytes->data(), bytes->size());
    return std::nullopt;
  }
  return bytes;
}

}  // namespace airlock::policy
