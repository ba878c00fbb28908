// Prefix routing and session pinning: the hash chain, the bounded maps and the decisions as pure
// functions, then loom-orchestrator (--routing prefix, the default) in front of two CPU workers.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "orchestrator/lru_map.h"
#include "orchestrator/orchestrator_process.h"
#include "orchestrator/prefix_router.h"
#include "orchestrator/prompt_tokens.h"
#include "support/run_command.h"
#include "tokenizer/tokenizer.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
using namespace loom::orchestrator;
using Clock = std::chrono::steady_clock;

std::vector<int32_t> iota_ids(size_t n, int32_t from = 1) {
    std::vector<int32_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = from + static_cast<int32_t>(i);
    return v;
}

// A story opening of about 100 tokens: six full blocks shared by every request that starts with it.
const std::string kStory =
    "Once upon a time there was a little girl named Lily who lived in a small house near the big "
    "forest with her mother, her father and her dog Max. Every morning she walked to the river to "
    "look at the fish and the birds, and every evening she told her mother what she had seen.";

std::string other_story(int i) {
    static const char* openings[] = {"Tom had a red ball and a blue car.", "The sun was hot and the sky was blue.",
                                     "A big bear lived in a cave by the hill.",
                                     "Sue and Ben liked to play in the park."};
    std::string s = openings[i % 4];
    return s + " " + s + " " + s + " " + s + " " + std::to_string(i);
}

// The routing decisions counted with `reason` (0 before the first).
double decisions(int port, const std::string& reason, const std::string& policy = "prefix") {
    return find_metric(port,
                       "loom_orchestrator_routing_decisions_total{policy=\"" + policy + "\",reason=\"" + reason + "\"}")
        .value_or(0);
}

// The orchestrator's view of one worker: its state and the tokens outstanding there.
json worker_view(int orch_port, const std::string& url) {
    const json j = json::parse(http_request(orch_port, "GET", "/health").body);
    for (const json& w : j.at("workers"))
        if (w.at("url") == url) return w;
    FAIL("no worker " << url);
    return {};
}

template <class Pred>
void wait_until(Pred pred, const char* what) {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    bool held = pred();
    while (!held && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        held = pred();
    }
    INFO(what);
    REQUIRE(held);
}

std::string worker_of(const HttpReply& r) {
    INFO(r.status << " " << r.body);
    REQUIRE(r.status == 200);
    return r.headers.at("x-worker");
}

std::string stories_path() { return require_stories260k().string(); }

// Two workers (`extra` arguments each) and the orchestrator with stories260K's tokenizer.
struct Cluster {
    explicit Cluster(std::vector<std::string> extra = {}, std::vector<std::string> orch_extra = {"--tokenizer"})
        : a(std::make_unique<Worker>(extra)), b(std::make_unique<Worker>(extra)) {
        if (!orch_extra.empty() && orch_extra.back() == "--tokenizer") orch_extra.push_back(stories_path());
        orch = std::make_unique<OrchestratorProcess>(std::vector<int>{a->port(), b->port()}, orch_extra);
    }
    std::unique_ptr<Worker> a, b;
    std::unique_ptr<OrchestratorProcess> orch;
    int port() const { return orch->port(); }
    std::string other(const std::string& url) const {
        return url == worker_url(a->port()) ? worker_url(b->port()) : worker_url(a->port());
    }
};

}  // namespace

TEST_CASE("block hashes: full 16-token blocks, chained, seeded, capped", "[routing][unit]") {
    const auto ids = iota_ids(70);
    const auto chain = block_hashes(ids, 7);
    REQUIRE(chain.size() == 4);  // 70 tokens: four full blocks, the last 6 tokens none
    CHECK(block_hashes(std::span(ids).first(15), 7).empty());
    CHECK(block_hashes(ids, 7, 2) == std::vector<uint64_t>(chain.begin(), chain.begin() + 2));
    // A change in block 2 changes hashes 2 and 3 only: each hash covers everything before it.
    auto changed = ids;
    changed[40] = 999;
    const auto chain2 = block_hashes(changed, 7);
    CHECK(chain2[0] == chain[0]);
    CHECK(chain2[1] == chain[1]);
    CHECK(chain2[2] != chain[2]);
    CHECK(chain2[3] != chain[3]);
    // The same block after a different history hashes differently; so does another seed (model).
    CHECK(block_hashes(std::span(ids).subspan(16), 7)[0] != chain[1]);
    CHECK(block_hashes(ids, 8)[0] != chain[0]);
    std::vector<uint64_t> all(chain.begin(), chain.end());
    std::sort(all.begin(), all.end());
    CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
    CHECK(hash_bytes("session-a") != hash_bytes("session-b"));
}

TEST_CASE("BoundedLru keeps the most recently used entries", "[routing][unit]") {
    BoundedLru<uint64_t, uint32_t> lru(3);
    lru.put(1, 10);
    lru.put(2, 20);
    lru.put(3, 30);
    REQUIRE(lru.find(1));  // 1 is now the most recent; 2 the least
    lru.put(4, 40);
    CHECK(lru.size() == 3);
    CHECK(lru.find(2) == nullptr);
    CHECK(*lru.find(1) == 10);
    lru.put(3, 33);  // replaced, and most recent
    lru.put(5, 50);  // evicts 4
    CHECK(lru.find(4) == nullptr);
    CHECK(*lru.find(3) == 33);
    CHECK(lru.size() == 3);
}

TEST_CASE("PrefixIndex: the deepest block held by an eligible worker", "[routing][unit]") {
    PrefixIndex index(1000);
    const auto a = block_hashes(iota_ids(16 * 5), 1);
    auto b_ids = iota_ids(16 * 5);
    b_ids[16 * 2] = 0;  // b shares a's first two blocks
    const auto b = block_hashes(b_ids, 1);
    CHECK_FALSE(index.longest_match(a, {0, 1}));
    index.record(a, 1);
    auto m = index.longest_match(b, {0, 1});
    REQUIRE(m);
    CHECK(*m == std::make_pair(size_t{1}, size_t{1}));  // block 1, worker 1 (position 1)
    CHECK_FALSE(index.longest_match(b, {0, 2}));        // worker 1 not eligible
    index.record(b, 0);                                 // blocks 0, 1 now last served by worker 0
    m = index.longest_match(a, {0, 1});
    REQUIRE(m);
    CHECK(*m == std::make_pair(size_t{4}, size_t{1}));  // a's own tail is still on worker 1
    m = index.longest_match(a, {0});
    REQUIRE(m);
    CHECK(*m == std::make_pair(size_t{1}, size_t{0}));
    PrefixIndex small(4);  // bounded: the oldest blocks go
    small.record(a, 3);
    CHECK(small.size() == 4);
}

TEST_CASE("the overload margin: more than max(512 tokens, half the lightest) above the lightest", "[routing][unit]") {
    CHECK_FALSE(overloaded(512, 0));
    CHECK(overloaded(513, 0));
    CHECK_FALSE(overloaded(1000 + 512, 1000));
    CHECK(overloaded(1000 + 513, 1000));
    CHECK_FALSE(overloaded(4000 + 2000, 4000));
    CHECK(overloaded(4000 + 2001, 4000));
}

TEST_CASE("prompt ids as the worker makes them, only their start, and what it costs", "[routing][unit]") {
    PromptTokenizers t;
    t.add("stories260K", stories_path());
    const auto tok = loom::tokenizer::Tokenizer::open(stories_path());
    const PromptIds p = t.tokenize("stories260K", {{"prompt", kStory}}, false);
    REQUIRE(p.status == PromptIds::Status::ok);
    CHECK(p.ids == tok.encode(kStory));  // with BOS, as /v1/completions
    CHECK(p.count == static_cast<int64_t>(p.ids.size()));
    CHECK(p.ids.size() >= 3 * kBlockTokens);
    CHECK(t.tokenize("", {{"prompt", kStory}}, false).ids == p.ids);  // the only model
    CHECK(t.tokenize("other", {{"prompt", kStory}}, false).status == PromptIds::Status::no_tokenizer);
    CHECK(t.tokenize("stories260K", {{"prompt", {5, 6, 7}}}, false).ids == std::vector<int32_t>{5, 6, 7});
    CHECK(t.tokenize("stories260K", {{"prompt", {{5, 6}}}}, false).ids == std::vector<int32_t>{5, 6});
    CHECK(t.tokenize("stories260K", {{"prompt", 5}}, false).status == PromptIds::Status::no_prompt);
    CHECK(t.tokenize("stories260K", {{"prompt", {"a", "b"}}}, false).status == PromptIds::Status::no_prompt);
    CHECK(t.tokenize("stories260K", {{"messages", "hi"}}, true).status == PromptIds::Status::no_prompt);
    CHECK(t.tokenize("stories260K", {{"messages", {{{"content", "hi"}}}}}, true).status ==
          PromptIds::Status::no_prompt);  // no role
    const json chat = {
        {"messages", {{{"role", "system"}, {"content", kStory}}, {{"role", "user"}, {"content", "Hi"}}}}};
    const PromptIds c = t.tokenize("stories260K", chat, true);
    REQUIRE(c.status == PromptIds::Status::ok);
    CHECK(c.ids.size() > p.ids.size());
    // A conversation of 100,000 empty messages is rendered only as far as the cap (a few ms at most). The
    // request is built before the clock starts: copying it is the test's cost, not tokenize's.
    json empty = json::array();
    for (int i = 0; i < 100000; ++i) empty.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", ""}});
    const json long_chat = {{"messages", std::move(empty)}};
    const auto t0 = Clock::now();
    CHECK(t.tokenize("stories260K", long_chat, true).status == PromptIds::Status::ok);
    CHECK(Clock::now() - t0 < std::chrono::milliseconds(500));

    // A long prompt: only its first 2 KiB are tokenized (less the last block), equal to the whole's.
    std::string long_text;
    while (long_text.size() < 64 * 1024) long_text += kStory + " ";
    const PromptIds l = t.tokenize("stories260K", {{"prompt", long_text}}, false);
    const auto whole = tok.encode(long_text);
    const auto cut = tok.encode(long_text.substr(0, PromptTokenizers::kMaxTextBytes));
    REQUIRE(l.ids.size() == cut.size() - kBlockTokens);
    CHECK(std::equal(l.ids.begin(), l.ids.end(), whole.begin()));
    CHECK(l.count == static_cast<int64_t>(cut.size()));
    // Ids given as ids: at most 1024 kept, all counted.
    const PromptIds many = t.tokenize("stories260K", {{"prompt", iota_ids(3000)}}, false);
    CHECK(many.ids == iota_ids(PromptTokenizers::kMaxTokens));
    CHECK(many.count == 3000);

    // Micro timing of the request path's added work (tokenize + chain), printed for the record.
    PrefixRouter router(Routing::prefix);
    router.add_tokenizer("stories260K", stories_path());
    for (const auto& [name, body, is_chat] :
         {std::tuple{"short prompt", json{{"prompt", kStory}}, false}, std::tuple{"chat", chat, true},
          std::tuple{"64 KiB prompt", json{{"prompt", long_text}}, false}}) {
        const int n = 100;
        std::vector<double> us;
        for (int i = 0; i < n; ++i) {
            const auto t0 = Clock::now();
            const auto plan = router.plan("stories260K", body, is_chat, "");
            us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
            REQUIRE_FALSE(plan.chain.empty());
        }
        std::sort(us.begin(), us.end());
        std::printf("routing plan, %s: p50 %.1f us, p99 %.1f us\n", name, us[n / 2], us[n * 99 / 100]);
    }
}

TEST_CASE("the decisions: prefix hit, miss, overload, sessions, no tokenizer", "[routing][unit]") {
    PrefixRouter router(Routing::prefix);
    router.add_tokenizer("stories260K", stories_path());
    const json story = {{"prompt", kStory}};
    const auto decide = [&](const json& body, const std::string& session, std::vector<int64_t> loads,
                            size_t own_pick = 0, const std::string& model = "stories260K") {
        std::vector<WorkerPool::Candidate> c;
        static const std::string urls[] = {"http://w0", "http://w1", "http://w2"};
        for (size_t i = 0; i < loads.size(); ++i) c.push_back({urls[i], "stories260K", loads[i]});
        auto prefer = router.preference(router.plan(model, body, false, session));
        REQUIRE(prefer);
        const WorkerPool::Pick p = prefer(c, own_pick);
        return std::make_pair(p.position, std::string(p.reason));
    };
    CHECK(decide(story, "", {0, 0}, 1) == std::make_pair(size_t{1}, std::string("prefix_miss")));
    CHECK(decide(story, "", {0, 0}, 0) == std::make_pair(size_t{1}, std::string("prefix_hit")));
    CHECK(decide(story, "", {0, 500}, 0) == std::make_pair(size_t{1}, std::string("prefix_hit")));  // within 512
    CHECK(decide(story, "", {0, 600}, 0) == std::make_pair(size_t{0}, std::string("prefix_overloaded")));
    CHECK(decide(story, "", {0, 0}, 1) == std::make_pair(size_t{0}, std::string("prefix_hit")));  // recorded on 0
    CHECK(decide(story, "", {0}, 0) == std::make_pair(size_t{0}, std::string("prefix_hit")));
    CHECK(decide({{"prompt", "Hi"}}, "", {0, 0}, 1).second == "prefix_miss");  // shorter than a block
    CHECK(decide({{"prompt", 3}}, "", {0, 0}, 1) == std::make_pair(size_t{1}, std::string("no_prompt")));
    CHECK(decide(story, "", {0, 0}, 1, "unknown") == std::make_pair(size_t{1}, std::string("no_tokenizer")));
    // Sessions: pinned while eligible, whatever the load or the prefix; moved when it is not.
    CHECK(decide(story, "s", {0, 0, 0}, 2) == std::make_pair(size_t{0}, std::string("session_new")));  // prefix
    CHECK(decide({{"prompt", "x"}}, "s", {9000, 0, 0}, 1) == std::make_pair(size_t{0}, std::string("session_pinned")));
    std::vector<WorkerPool::Candidate> without_w0 = {{"http://w1", "stories260K", 0}, {"http://w2", "stories260K", 0}};
    auto prefer = router.preference(router.plan("stories260K", {{"prompt", "x"}}, false, "s"));
    const WorkerPool::Pick moved = prefer(without_w0, 1);
    CHECK(moved.position == 1);
    CHECK(std::string(moved.reason) == "session_moved");
    CHECK(decide({{"prompt", "x"}}, "s", {0, 0, 0}, 0) == std::make_pair(size_t{2}, std::string("session_pinned")));
    // Least-load routing asks nothing without a session, and pins sessions all the same.
    PrefixRouter least(Routing::least_load);
    CHECK_FALSE(least.preference(least.plan("", story, false, "")));
    auto pinned = least.preference(least.plan("", story, false, "u"));
    REQUIRE(pinned);
    std::vector<WorkerPool::Candidate> two = {{"http://w0", "m", 0}, {"http://w1", "m", 0}};
    CHECK(std::string(pinned(two, 1).reason) == "session_new");
    CHECK(pinned(two, 0).position == 1);
}

TEST_CASE("requests sharing a prefix go to one worker; other prefixes spread", "[routing][orchestrator]") {
    Cluster c;
    // Two different prefixes while the first is still running: the second goes to the idle worker.
    const json held = {{"max_tokens", 1900}, {"ignore_eos", true}, {"stream", true}};
    auto s1 = std::make_unique<SseStream>(c.port(), "/v1/completions", with({{"prompt", other_story(1)}}, held).dump());
    REQUIRE(s1->status() == 200);
    REQUIRE(s1->next());
    auto s2 = std::make_unique<SseStream>(c.port(), "/v1/completions", with({{"prompt", other_story(2)}}, held).dump());
    REQUIRE(s2->status() == 200);
    const std::string w1 = s1->headers().at("x-worker"), w2 = s2->headers().at("x-worker");
    CHECK(w1 != w2);
    s1->disconnect();
    s2->disconnect();
    wait_until(
        [&] {
            return worker_view(c.port(), w1).at("outstanding_tokens") == 0 &&
                   worker_view(c.port(), w2).at("outstanding_tokens") == 0;
        },
        "the streams' load released");

    std::string first;
    for (int i = 0; i < 10; ++i) {
        const std::string w =
            worker_of(post(c.port(), "/v1/completions",
                           {{"prompt", kStory + " Story " + std::to_string(i) + "."}, {"max_tokens", 2}}));
        if (i == 0) first = w;
        CHECK(w == first);
    }
    // Each earlier prefix is still where it was served.
    CHECK(worker_of(post(c.port(), "/v1/completions", {{"prompt", other_story(1)}, {"max_tokens", 2}})) == w1);
    CHECK(worker_of(post(c.port(), "/v1/completions", {{"prompt", other_story(2)}, {"max_tokens", 2}})) == w2);
    // Chat: a shared system prompt is a shared prefix of the rendered conversation.
    std::string chat_first;
    for (const char* question : {"Who is Lily?", "Where is Max?", "What is in the river?", "Is it night?"}) {
        const json body = {
            {"messages", {{{"role", "system"}, {"content", kStory}}, {{"role", "user"}, {"content", question}}}},
            {"max_tokens", 2}};
        const std::string w = worker_of(post(c.port(), "/v1/chat/completions", body));
        if (chat_first.empty()) chat_first = w;
        CHECK(w == chat_first);
    }
    CHECK(decisions(c.port(), "prefix_hit") == 9 + 2 + 3);
    // The chat prompt's ids are the worker's own.
    PromptTokenizers t;
    t.add("stories260K", stories_path());
    const json chat = {
        {"messages", {{{"role", "system"}, {"content", kStory}}, {{"role", "user"}, {"content", "Hi"}}}}};
    CHECK(t.tokenize("stories260K", chat, true).ids ==
          post_ok(c.a->port(), "/tokenize", chat).at("tokens").get<std::vector<int32_t>>());
    CHECK(decisions(c.port(), "prefix_miss") == 2 + 1 + 1);
}

TEST_CASE("a prefix whose worker is overloaded goes to the lighter one", "[routing][orchestrator]") {
    // --worker-queue: the orchestrator may place requests in the worker's own queue beyond its one
    // sequence, so their load stays there (admission would otherwise hold them back).
    Cluster c({"--max-seqs", "1"}, {"--worker-queue", "8", "--tokenizer"});
    const std::string w = worker_of(post(c.port(), "/v1/completions", {{"prompt", kStory}, {"max_tokens", 2}}));
    // Three long requests pinned there by their `user` (queued behind one sequence: their load stays).
    std::vector<std::unique_ptr<HttpConnection>> heavy;
    for (int i = 0; i < 3; ++i) {
        heavy.push_back(std::make_unique<HttpConnection>(c.port()));
        heavy.back()->send(
            "POST", "/v1/completions",
            json{{"prompt", kStory}, {"user", "heavy"}, {"max_tokens", 1900}, {"ignore_eos", true}, {"stream", true}}
                .dump());
    }
    wait_until([&] { return worker_view(c.port(), w).at("outstanding_tokens").get<int64_t>() > 3000; },
               "the heavy requests routed to the prefix's worker");
    CHECK(worker_of(post(c.port(), "/v1/completions", {{"prompt", kStory}, {"max_tokens", 2}})) == c.other(w));
    CHECK(decisions(c.port(), "prefix_overloaded") == 1);
    CHECK(decisions(c.port(), "session_new") == 1);
    CHECK(decisions(c.port(), "session_pinned") == 2);
    for (auto& h : heavy) h->disconnect();
}

TEST_CASE("X-Session-Id and user pin a session; it moves once when its worker dies", "[routing][orchestrator]") {
    Cluster c;
    const std::string story_worker =
        worker_of(post(c.port(), "/v1/completions", {{"prompt", kStory}, {"max_tokens", 2}}));
    // A session that starts on the other worker stays there, even for the story's prefix.
    const auto pinned_elsewhere = [&](const auto& send, const std::string& tag) {
        for (int i = 0; i < 40; ++i) {
            const std::string id = tag + std::to_string(i);
            if (worker_of(send(id, id + ": " + other_story(i))) != story_worker) return id;
        }
        FAIL("no session started on the other worker in 40 tries");
        return std::string();
    };
    const auto by_header = [&](const std::string& id, const std::string& prompt) {
        return post(c.port(), "/v1/completions", {{"prompt", prompt}, {"max_tokens", 2}}, {{"X-Session-Id", id}});
    };
    const auto by_user = [&](const std::string& id, const std::string& prompt) {
        return post(c.port(), "/v1/completions", {{"prompt", prompt}, {"max_tokens", 2}, {"user", id}});
    };
    const std::string header_session = pinned_elsewhere(by_header, "header-session-");
    const std::string user_session = pinned_elsewhere(by_user, "user-session-");
    for (int i = 0; i < 3; ++i) {
        CHECK(worker_of(by_header(header_session, kStory)) == c.other(story_worker));
        CHECK(worker_of(by_user(user_session, kStory)) == c.other(story_worker));
    }
    CHECK(decisions(c.port(), "session_pinned") == 6);

    // The session's worker is killed: the session moves to the survivor and stays there.
    const std::string dead = c.other(story_worker);
    (dead == worker_url(c.a->port()) ? c.a : c.b)->signal(SIGKILL);
    wait_until([&] { return worker_view(c.port(), dead).at("state") != "ready"; }, "the killed worker left routing");
    for (int i = 0; i < 4; ++i) CHECK(worker_of(by_header(header_session, other_story(i))) == story_worker);
    CHECK(decisions(c.port(), "session_moved") == 1);
    CHECK(decisions(c.port(), "session_pinned") == 6 + 3);
}

TEST_CASE("without a tokenizer for the model, prefix routing is least load, counted as no_tokenizer",
          "[routing][orchestrator]") {
    Cluster c({}, {});
    for (int i = 0; i < 3; ++i) worker_of(post(c.port(), "/v1/completions", {{"prompt", kStory}, {"max_tokens", 2}}));
    CHECK(decisions(c.port(), "no_tokenizer") == 3);
    CHECK(decisions(c.port(), "prefix_miss") == 0);
    // A body the worker refuses is still routed (to its 400), counted as no_prompt.
    OrchestratorProcess t({c.a->port(), c.b->port()}, {"--tokenizer", stories_path()});
    CHECK(post(t.port(), "/v1/completions", {{"prompt", 5}, {"max_tokens", 2}}).status == 400);
    CHECK(decisions(t.port(), "no_prompt") == 1);
}

TEST_CASE("--tokenizer: a file that cannot be read exits 2 naming it", "[routing][cli]") {
    const CommandResult r = run_command(shell_quote(orchestrator_bin()) +
                                        " --worker http://127.0.0.1:9 --port 0 --tokenizer /nonexistent/m.gguf");
    INFO(r.err << r.out);
    CHECK(r.exit_code == 2);
    CHECK((r.err + r.out).find("--tokenizer /nonexistent/m.gguf") != std::string::npos);
}
