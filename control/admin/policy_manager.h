// The control plane's active policy and its distribution: a new policy text is parsed and checked
// (its own tests included), compiled, installed on every data plane instance, saved, and only
// then becomes active and is announced to listeners (the gateway). Any failure leaves the
// previous policy active in the control plane.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "policy/document.h"
#include "policy/peer_directory.h"

namespace airlock::control::admin {

// The control socket airlock-dataplane opens for `--instance NAME` by default.
std::string control_socket_path(std::string_view instance);

struct DataPlaneTarget {
  std::string instance;     // named in messages
  std::string socket_path;  // usually control_socket_path(instance)
};

struct PolicyManagerOptions {
  // Where the last good policy text is kept (replaced atomically); load() reads it at start.
  std::string policy_path;
  std::vector<DataPlaneTarget> data_planes;
};

struct ActivePolicy {
  std::string text;
  std::string file_name;  // as errors name it
  std::shared_ptr<const policy::Document> document;
  std::shared_ptr<const policy::PeerDirectory> peers;  // document's, for per-request lookups
  std::vector<uint8_t> compiled;
  uint64_t version = 0;
};

struct ApplyResult {
  enum class Error {
    kNone,
    kInvalid,    // does not parse, fails its checks or its tests, or does not compile
    kNotNewer,   // version not above the active one
    kDataPlane,  // an instance is unreachable, rejected it or did not acknowledge it
    kPersist,    // could not be saved to the policy path
  };
  Error error = Error::kNone;
  std::string message;   // names the file and line, or the data plane instance
  uint64_t version = 0;  // the new version on success
  bool ok() const { return error == Error::kNone; }
};

class PolicyManager {
 public:
  using Listener = std::function<void(std::shared_ptr<const policy::Document>)>;

  explicit PolicyManager(PolicyManagerOptions options);

  // Listeners run on the thread that activates a policy (apply() or load()), in version order.
  void add_listener(Listener listener);

  // Checks what only the control plane can (provider keys load, guardrails compile) before
  // anything is pushed; a false answer rejects the policy as invalid with *error as the reason.
  using Validator = std::function<bool(const policy::Document&, std::string* error)>;
  void set_validator(Validator validator);

  // Activates the saved policy, if any, without pushing it (ensure_pushed() does that).
  // A missing file is not an error: there is just no active policy yet.
  bool load(std::string* error);

  // Blocks while the data planes answer (each socket read or write gives up after 10 s).
  // Before pushing anything it asks every instance for its version, so an instance that is down
  // fails the apply before any other instance has changed.
  ApplyResult apply(std::string_view text, std::string_view file_name);

  // nullptr until a policy has been loaded or applied.
  std::shared_ptr<const ActivePolicy> active() const;

  // Re-pushes the active policy to every instance running an older version (one that restarted).
  // Returns one message per instance that is still not on the active version; empty when all
  // are in sync.
  std::vector<std::string> ensure_pushed();

 private:
  void activate(std::shared_ptr<const ActivePolicy> policy);

  PolicyManagerOptions options_;
  std::mutex apply_mu_;  // one apply or ensure_pushed at a time
  mutable std::mutex mu_;
  std::shared_ptr<const ActivePolicy> active_;
  std::vector<Listener> listeners_;
  Validator validator_;
};

}  // namespace airlock::control::admin
