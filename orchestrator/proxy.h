// One client's generation through the orchestrator: the worker call, retries before the first
// byte, the relayed answer, and the token-exact continuation on another worker when a stream breaks.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "http/http_server.h"
#include "orchestrator/admission.h"
#include "orchestrator/metrics.h"
#include "orchestrator/prefix_router.h"
#include "orchestrator/request_log.h"
#include "orchestrator/sse_relay.h"
#include "orchestrator/upstreams.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

// What every proxied request shares.
struct ProxyContext {
    // Where its upstream calls and timers run: the client connection's own server thread
    // (http::serving_io_context), so a relayed chunk is read and written on one thread.
    boost::asio::io_context& ioc;
    WorkerPool& pool;
    Metrics& metrics;
    int retries;
    Admission& admission;
    PrefixRouter* router = nullptr;  // prefix routing and sessions; null: the pool's policy alone
    Upstreams& upstreams;            // how calls reach the workers
    RequestLog* requests = nullptr;  // the dashboard's record of ended requests and tokens; null: none kept
};

// A parsed client request, ready to send upstream (seed and return_token_ids already set).
struct ProxiedRequest {
    std::string id;  // the orchestrator's id (X-Request-Id)
    bool chat = false;
    nlohmann::json body;  // as sent upstream
    std::string model;    // "" when the client named none (a preset's base model when it named a preset)
    std::string preset;   // the preset the client named, "" when none: answers say its name as their model
    bool stream = false;
    bool want_token_ids = false;
    std::optional<int64_t> max_tokens;              // as the client gave it (chat: max_completion_tokens or max_tokens)
    std::string seed;                               // X-Seed
    std::string authorization;                      // forwarded as it came ("" when none)
    AdmissionFields admission;                      // priority and timeout, taken out of the body
    std::string key_name;                           // the API key's name from --api-keys, for logs ("" when none)
    std::string session;                            // X-Session-Id, else the body's `user` ("" when neither)
    std::chrono::steady_clock::time_point arrived;  // the handler's entry (added-latency metric)
};

// The load a request adds when it starts: max_tokens (256 when absent) plus a guess for its prompt.
int64_t initial_load(const ProxiedRequest& req);

class ProxyProducer : public http::ResponseProducer, public Waiter, public std::enable_shared_from_this<ProxyProducer> {
public:
    ProxyProducer(ProxyContext ctx, ProxiedRequest req) : ctx_(ctx), req_(std::move(req)), deadline_(ctx_.ioc) {}
    ~ProxyProducer() override;

    // Picks the first worker now, or a place in the queue when every worker is full, so the handler
    // can answer 404, 503 or 429 at once; nullopt when the producer answers, else that error.
    std::optional<http::HttpResponse> route();

    // From the queue: a worker for this request, or the answer that none can serve it.
    void admitted(std::unique_ptr<WorkerPool::Lease> lease) override;
    void refused(http::HttpResponse response) override;

    void start(std::function<void()> notify) override;
    Progress poll() override;
    void abandoned() override;

    // The pool ejected `url`: a stream running there goes on elsewhere now (a hung worker may never
    // close its connection); a request still waiting for its head is retried.
    void worker_lost(const std::string& url);

    // The worker and its request id for /cancel, while a call is live.
    std::optional<std::pair<WorkerUrl, std::string>> live_upstream() const;

private:
    void begin();
    void arm_timeout();
    void on_timeout();
    void launch(const std::string& target, const nlohmann::json& body);
    void on_written(uint64_t call);
    void on_head(uint64_t call, int status, const http::HttpHeaders& headers);
    void on_data(uint64_t call, std::string data);
    void on_end(uint64_t call, const UpstreamEnd& end);
    void relay_events();
    void answer_whole(const UpstreamEnd& end);
    bool retry();
    void fail_over(bool connection_broke);
    int64_t remaining_tokens(size_t prompt_size) const;
    void finish_with_error(const std::string& message);
    http::HttpHeaders headers() const;
    void wake();
    void note_tokens(size_t generated, const nlohmann::json& chunk);
    void log_end(int status, const std::string& reason);

    ProxyContext ctx_;
    ProxiedRequest req_;
    mutable std::mutex mu_;
    std::function<void()> notify_;
    bool launched_ = false;
    bool abandoned_ = false;
    std::optional<uint64_t> ticket_;      // waiting in the admission queue
    boost::asio::steady_timer deadline_;  // the request's timeout, when it has one
    std::unique_ptr<WorkerPool::Lease> lease_;
    std::shared_ptr<UpstreamCall> call_;
    uint64_t call_number_ = 0;  // handlers of an earlier (cancelled) call are ignored
    std::set<std::string> tried_;
    int retries_used_ = 0;

    // The current upstream call.
    int status_ = 0;
    std::string upstream_id_;
    std::string backend_;  // the answering worker's X-Backend ("cuda; device=0; uuid=…", "cpu"), relayed
    std::string body_;     // a whole answer (or an error) as it arrives
    std::string pending_;  // stream bytes not yet a whole event
    bool done_seen_ = false;
    RelayRules rules_;

    // What the client has, and what it is owed.
    std::optional<http::HttpResponse> answer_;  // the head (streams) or whole answer, once known
    bool answer_given_ = false;
    bool committed_ = false;  // a 200 stream head is on its way: from now on failures fail over
    bool role_sent_ = false;
    std::string out_;
    std::vector<std::chrono::steady_clock::time_point> out_arrivals_;  // when the pieces in out_ came upstream
    bool request_latency_seen_ = false;
    bool done_ = false;
    std::vector<int> prompt_ids_, relayed_ids_;

    // For the request log.
    std::optional<std::chrono::steady_clock::time_point> first_token_at_, last_token_at_;
    std::string finish_reason_;
    int64_t whole_prompt_tokens_ = 0, whole_completion_tokens_ = 0;  // a whole answer's
    bool logged_ = false;
};

}  // namespace loom::orchestrator
