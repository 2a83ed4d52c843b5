#include "control/admin/policy_manager.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "control/admin/atomic_file.h"
#include "dataplane/control_socket.h"

namespace airlock::control::admin {
namespace {

// "OK <version>" → version; anything else → nullopt.
std::optional<uint64_t> ok_version(std::string_view answer) {
  if (!answer.starts_with("OK ")) return std::nullopt;
  std::string_view digits = answer.substr(3);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;
  return v;
}

// The version an instance runs now, or nullopt with *error naming it.
std::optional<uint64_t> running_version(const DataPlaneTarget& dp, std::string* error) {
  std::string why;
  auto answer = dp::control_request(dp.socket_path, "VERSION", {}, &why);
  if (!answer) {
    *error = "data plane " + dp.instance + ": " + why;
    return std::nullopt;
  }
  auto v = ok_version(*answer);
  if (!v) *error = "data plane " + dp.instance + ": unexpected answer \"" + *answer + "\"";
  return v;
}

// Installs `compiled` (version `version`) and checks the acknowledgement.
bool push(const DataPlaneTarget& dp, std::span<const uint8_t> compiled, uint64_t version,
          std::string* error) {
  std::string why;
  auto answer = dp::control_request(dp.socket_path, "PUSH " + std::to_string(compiled.size()),
                                    compiled, &why);
  if (!answer) {
    *error = "data plane " + dp.instance + " did not acknowledge the policy: " + why;
    return false;
  }
  if (answer->starts_with("ERR")) {
    std::string_view msg = std::string_view(*answer).substr(3);
    if (msg.starts_with(' ')) msg.remove_prefix(1);
    *error = "data plane " + dp.instance + " rejected the policy: " + std::string(msg);
    return false;
  }
  auto acked = ok_version(*answer);
  if (!acked || *acked != version) {
    *error = "data plane " + dp.instance + " answered \"" + *answer + "\" instead of OK " +
             std::to_string(version);
    return false;
  }
  return true;
}

}  // namespace

std::string control_socket_path(std::string_view instance) {
  return "/run/airlock/" + std::string(instance) + ".sock";
}

PolicyManager::PolicyManager(PolicyManagerOptions options) : options_(std::move(options)) {}

void PolicyManager::add_listener(Listener listener) {
  std::lock_guard lock(mu_);
  listeners_.push_back(std::move(listener));
}

void PolicyManager::set_validator(Validator validator) {
  std::lock_guard lock(apply_mu_);
  validator_ = std::move(validator);
}

std::shared_ptr<const ActivePolicy> PolicyManager::active() const {
  std::lock_guard lock(mu_);
  return active_;
}

void PolicyManager::activate(std::shared_ptr<const ActivePolicy> policy) {
  std::vector<Listener> listeners;
  {
    std::lock_guard lock(mu_);
    active_ = policy;
    listeners = listeners_;
  }
  for (const Listener& listener : listeners) listener(policy->document);
}

bool PolicyManager::load(std::string* error) {
  std::lock_guard apply_lock(apply_mu_);
  std::ifstream in(options_.policy_path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(options_.policy_path)) return true;
    *error = options_.policy_path + ": cannot read";
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto policy = std::make_shared<ActivePolicy>();
  policy->text = std::move(text).str();
  policy->file_name = options_.policy_path;
  auto document = policy::parse_document(policy->text, policy->file_name, error);
  if (!document) return false;
  auto compiled = policy::compile(*document, error);
  if (!compiled) return false;
  policy->version = document->version;
  policy->document = std::make_shared<const policy::Document>(std::move(*document));
  policy->peers = std::make_shared<const policy::PeerDirectory>(*policy->document);
  policy->compiled = std::move(*compiled);
  activate(std::move(policy));
  return true;
}

ApplyResult PolicyManager::apply(std::string_view text, std::string_view file_name) {
  std::lock_guard apply_lock(apply_mu_);
  ApplyResult result;
  auto fail = [&](ApplyResult::Error error, std::string message) {
    result.error = error;
    result.message = std::move(message);
    return result;
  };

  std::string error;
  auto document = policy::parse_document(text, file_name, &error);
  if (!document) return fail(ApplyResult::Error::kInvalid, error);
  auto previous = active();
  uint64_t active_version = previous ? previous->version : 0;
  if (document->version <= active_version) {
    return fail(ApplyResult::Error::kNotNewer,
                std::string(file_name) + ": policy version " + std::to_string(document->version) +
                    " is not newer than the active version " + std::to_string(active_version));
  }
  auto compiled = policy::compile(*document, &error);
  if (!compiled) return fail(ApplyResult::Error::kInvalid, error);
  if (validator_ && !validator_(*document, &error)) {
    return fail(ApplyResult::Error::kInvalid, std::string(file_name) + ": " + error);
  }
  uint64_t version = document->version;

  for (const DataPlaneTarget& dp : options_.data_planes) {
    auto running = running_version(dp, &error);
    if (!running) return fail(ApplyResult::Error::kDataPlane, error);
    if (*running > version) {
      return fail(ApplyResult::Error::kDataPlane,
                  "data plane " + dp.instance + " already runs version " +
                      std::to_string(*running) + ", newer than " + std::to_string(version));
    }
  }

  // Written before any push so that a full disk fails the apply while nothing has changed; the
  // rename after the pushes cannot run out of space.
  auto pending = PendingFile::write(options_.policy_path, text, &error);
  if (!pending) return fail(ApplyResult::Error::kPersist, error);

  std::vector<std::string> updated;
  for (const DataPlaneTarget& dp : options_.data_planes) {
    if (!push(dp, *compiled, version, &error)) {
      if (!updated.empty()) {
        error += " (already running version " + std::to_string(version) + ":";
        for (const std::string& name : updated) error += " " + name;
        error += ")";
      }
      return fail(ApplyResult::Error::kDataPlane, error);
    }
    updated.push_back(dp.instance);
  }

  if (!pending->commit(&error)) {
    return fail(ApplyResult::Error::kPersist,
                error + " (the data planes already run version " + std::to_string(version) + ")");
  }

  auto policy = std::make_shared<ActivePolicy>();
  policy->text = std::string(text);
  policy->file_name = std::string(file_name);
  policy->document = std::make_shared<const policy::Document>(std::move(*document));
  policy->peers = std::make_shared<const policy::PeerDirectory>(*policy->document);
  policy->compiled = std::move(*compiled);
  policy->version = version;
  activate(std::move(policy));
  result.version = version;
  return result;
}

std::vector<std::string> PolicyManager::ensure_pushed() {
  std::lock_guard apply_lock(apply_mu_);
  std::vector<std::string> problems;
  auto policy = active();
  if (!policy) return problems;
  for (const DataPlaneTarget& dp : options_.data_planes) {
    std::string error;
    auto running = running_version(dp, &error);
    if (!running) {
      problems.push_back(error);
    } else if (*running > policy->version) {
      problems.push_back("data plane " + dp.instance + " runs version " + std::to_string(*running) +
                         ", newer than the active " + std::to_string(policy->version));
    } else if (*running < policy->version && !push(dp, policy->compiled, policy->version, &error)) {
      problems.push_back(error);
    }
  }
  return problems;
}

}  // namespace airlock::control::admin
