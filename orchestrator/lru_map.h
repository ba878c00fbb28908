// BoundedLru: a map that keeps at most `capacity` entries and forgets the least recently used.
#pragma once

#include <cstddef>
#include <list>
#include <unordered_map>
#include <utility>

namespace loom::orchestrator {

// Not thread-safe: the owner locks. Memory is about 100 bytes per entry for small keys and values.
template <class Key, class Value>
class BoundedLru {
public:
    explicit BoundedLru(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

    // The value, now the most recently used; null when absent.
    const Value* find(const Key& key) {
        const auto it = index_.find(key);
        if (it == index_.end()) return nullptr;
        order_.splice(order_.begin(), order_, it->second);
        return &it->second->second;
    }

    // Inserts or replaces, as the most recently used; the least recently used goes when full.
    void put(const Key& key, Value value) {
        if (const auto it = index_.find(key); it != index_.end()) {
            it->second->second = std::move(value);
            order_.splice(order_.begin(), order_, it->second);
            return;
        }
        order_.emplace_front(key, std::move(value));
        index_.emplace(key, order_.begin());
        if (order_.size() > capacity_) {
            index_.erase(order_.back().first);
            order_.pop_back();
        }
    }

    size_t size() const { return order_.size(); }
    size_t capacity() const { return capacity_; }

private:
    size_t capacity_;
    std::list<std::pair<Key, Value>> order_;  // most recently used first
    std::unordered_map<Key, typename std::list<std::pair<Key, Value>>::iterator> index_;
};

}  // namespace loom::orchestrator
