// The live generation requests by the id clients see: unguessable ids, and who may cancel each.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace loom::worker {

class RequestRegistry {
public:
    // A fresh id, `prefix` + 24 random hex digits ("chatcmpl-3f9c…"): ids say nothing about the
    // requests of others and cannot be guessed to cancel them.
    static std::string new_id(const std::string& prefix);

    // `owner` is the API key the request came with ("" when the worker has none).
    void add(const std::string& id, uint64_t loop_id, std::string owner);
    void remove(const std::string& id);

    // The engine loop's id of a live request that `owner` made; nullopt for an unknown id, a
    // finished request, or another key's request (the caller cannot tell these apart).
    std::optional<uint64_t> find(const std::string& id, const std::string& owner) const;

private:
    struct Entry {
        uint64_t loop_id;
        std::string owner;
    };
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Entry> live_;
};

}  // namespace loom::worker
