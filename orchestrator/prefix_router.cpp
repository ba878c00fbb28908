// The prefix and session decisions, taken inside WorkerPool::choose through its Preference hook.
#include "orchestrator/prefix_router.h"

#include <algorithm>

namespace loom::orchestrator {

namespace {

// splitmix64's finalizer: every input bit reaches every output bit.
uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

}  // namespace

std::vector<uint64_t> block_hashes(std::span<const int32_t> ids, uint64_t seed, size_t max_blocks) {
    const size_t n = std::min(ids.size() / kBlockTokens, max_blocks);
    std::vector<uint64_t> chain;
    chain.reserve(n);
    uint64_t h = seed;
    for (size_t b = 0; b < n; ++b) {
        h = mix(h + kGolden);
        for (size_t i = b * kBlockTokens; i < (b + 1) * kBlockTokens; ++i)
            h = mix(h ^ (static_cast<uint32_t>(ids[i]) + kGolden));
        chain.push_back(h);
    }
    return chain;
}

uint64_t hash_bytes(std::string_view bytes) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, then mixed
    for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
    return mix(h);
}

std::optional<std::pair<size_t, size_t>> PrefixIndex::longest_match(const std::vector<uint64_t>& chain,
                                                                    const std::vector<uint32_t>& workers) {
    for (size_t b = chain.size(); b-- > 0;) {
        const uint32_t* w = map_.find(chain[b]);
        if (!w) continue;
        const auto at = std::find(workers.begin(), workers.end(), *w);
        if (at != workers.end()) return std::make_pair(b, static_cast<size_t>(at - workers.begin()));
    }
    return std::nullopt;
}

void PrefixIndex::record(const std::vector<uint64_t>& chain, uint32_t worker) {
    for (uint64_t h : chain) map_.put(h, worker);
}

bool overloaded(int64_t load, int64_t lightest) { return load > lightest + std::max(kOverloadTokens, lightest / 2); }

PrefixRouter::PrefixRouter(Routing routing) : routing_(routing), blocks_(kBlockEntries), sessions_(kSessionEntries) {}

void PrefixRouter::add_tokenizer(const std::string& model, const std::filesystem::path& gguf) {
    tokenizers_.add(model, gguf);
}

PrefixRouter::Plan PrefixRouter::plan(const std::string& model, const nlohmann::json& body, bool chat,
                                      const std::string& session) const {
    Plan p;
    p.model = model;
    if (!session.empty()) p.session = hash_bytes(session);
    PromptIds ids = tokenizers_.tokenize(model, body, chat);
    p.prompt = ids.status;
    if (ids.status != PromptIds::Status::ok) return p;
    p.model = ids.model;
    p.prompt_tokens = ids.count;
    if (routing_ == Routing::prefix) p.chain = block_hashes(ids.ids, hash_bytes(p.model), kMaxBlocks);
    return p;
}

WorkerPool::Preference PrefixRouter::preference(Plan plan) {
    if (routing_ != Routing::prefix && !plan.session) return {};
    return [this, plan = std::move(plan)](const std::vector<WorkerPool::Candidate>& eligible, size_t own_pick) {
        return decide(plan, eligible, own_pick);
    };
}

// A session goes where it is pinned while that worker is eligible; otherwise the policy chooses and
// the session is pinned there. The prompt's blocks are recorded for the worker chosen.
WorkerPool::Pick PrefixRouter::decide(const Plan& plan, const std::vector<WorkerPool::Candidate>& eligible,
                                      size_t own_pick) {
    std::lock_guard lock(mu_);
    std::vector<uint32_t> ids;
    for (const auto& c : eligible) ids.push_back(worker_id(c.url));
    std::optional<WorkerPool::Pick> pick;
    bool known_session = false;
    if (plan.session) {
        if (const uint32_t* w = sessions_.find(*plan.session)) {
            known_session = true;
            if (const auto at = std::find(ids.begin(), ids.end(), *w); at != ids.end())
                pick = WorkerPool::Pick{static_cast<size_t>(at - ids.begin()), "session_pinned"};
        }
    }
    if (!pick) {
        pick = routing_ == Routing::prefix ? by_prefix(plan, eligible, ids, own_pick)
                                           : WorkerPool::Pick{own_pick, "initial"};
        if (plan.session) {
            sessions_.put(*plan.session, ids[pick->position]);
            pick->reason = known_session ? "session_moved" : "session_new";
        }
    }
    if (!plan.chain.empty()) blocks_.record(plan.chain, ids[pick->position]);
    return *pick;
}

WorkerPool::Pick PrefixRouter::by_prefix(const Plan& plan, const std::vector<WorkerPool::Candidate>& eligible,
                                         const std::vector<uint32_t>& ids, size_t own_pick) {
    if (plan.prompt == PromptIds::Status::no_prompt) return {own_pick, "no_prompt"};
    // No tokenizer, or (a request naming no model) workers serving another model than the tokenizer's.
    const bool tokenized =
        plan.prompt == PromptIds::Status::ok &&
        std::all_of(eligible.begin(), eligible.end(), [&](const auto& c) { return c.model == plan.model; });
    if (!tokenized) return {own_pick, "no_tokenizer"};
    const auto match = blocks_.longest_match(plan.chain, ids);
    if (!match) return {own_pick, "prefix_miss"};
    int64_t lightest = INT64_MAX;
    for (const auto& c : eligible) lightest = std::min(lightest, c.load);
    if (overloaded(eligible[match->second].load, lightest)) return {own_pick, "prefix_overloaded"};
    return {match->second, "prefix_hit"};
}

// Interned URLs, so that the maps hold 4-byte ids; workers are never removed from a pool.
uint32_t PrefixRouter::worker_id(std::string_view url) {
    const auto at = std::find(urls_.begin(), urls_.end(), url);
    if (at != urls_.end()) return static_cast<uint32_t>(at - urls_.begin());
    urls_.emplace_back(url);
    return static_cast<uint32_t>(urls_.size() - 1);
}

}  // namespace loom::orchestrator
