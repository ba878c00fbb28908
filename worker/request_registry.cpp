// RequestRegistry: a locked map from public id to the engine loop's id and the owning key.
#include "worker/request_registry.h"

#include "http/api_keys.h"
#include "http/secure_random.h"

namespace loom::worker {

using http::random_hex;
using http::same_secret;

std::string RequestRegistry::new_id(const std::string& prefix) { return prefix + random_hex(12); }

void RequestRegistry::add(const std::string& id, uint64_t loop_id, std::string owner) {
    std::lock_guard lock(mutex_);
    live_[id] = Entry{loop_id, std::move(owner)};
}

void RequestRegistry::remove(const std::string& id) {
    std::lock_guard lock(mutex_);
    live_.erase(id);
}

std::optional<uint64_t> RequestRegistry::find(const std::string& id, const std::string& owner) const {
    std::lock_guard lock(mutex_);
    const auto it = live_.find(id);
    if (it == live_.end() || !same_secret(it->second.owner, owner)) return std::nullopt;
    return it->second.loop_id;
}

}  // namespace loom::worker
