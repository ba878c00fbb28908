// PassthroughProducer: one relayed request, its worker calls and the answer; upstream handlers
// and poll() run on the client connection's thread, mu_ orders them with the rest.
#include "orchestrator/passthrough.h"

#include <mutex>
#include <optional>
#include <set>

namespace loom::orchestrator {

using http::HttpResponse;

namespace {

class PassthroughProducer : public http::ResponseProducer, public std::enable_shared_from_this<PassthroughProducer> {
public:
    PassthroughProducer(ProxyContext ctx, PassthroughRequest req, std::unique_ptr<WorkerPool::Lease> lease)
        : ctx_(ctx), req_(std::move(req)), lease_(std::move(lease)) {}
    ~PassthroughProducer() override {
        if (call_) call_->cancel();
    }

    void start(std::function<void()> notify) override {
        std::lock_guard lock(mu_);
        notify_ = std::move(notify);
        launch();
    }

    Progress poll() override {
        std::lock_guard lock(mu_);
        Progress p;
        if (!answer_) return p;
        p.done = true;
        p.whole = std::move(*answer_);
        answer_.reset();
        return p;
    }

    void abandoned() override {
        std::lock_guard lock(mu_);
        if (call_) call_->cancel();
        call_.reset();
        lease_.reset();
    }

private:
    // Sends the request to the leased worker (mu_ held).
    void launch() {
        status_ = 0;
        content_type_ = "application/json";
        backend_.clear();
        body_.clear();
        tried_.insert(lease_->worker().text);
        UpstreamRequest r{lease_->worker(), req_.method, req_.target, req_.body, {}};
        if (!req_.authorization.empty()) r.headers.emplace_back("Authorization", req_.authorization);
        r.total_timeout = std::chrono::milliseconds(30'000);
        std::weak_ptr<PassthroughProducer> weak = weak_from_this();
        UpstreamHandlers h;
        h.on_head = [weak](int status, const http::HttpHeaders& headers) {
            if (auto self = weak.lock()) self->on_head(status, headers);
        };
        h.on_data = [weak](std::string data) {
            if (auto self = weak.lock()) self->on_data(data);
        };
        h.on_end = [weak](const UpstreamEnd& end) {
            if (auto self = weak.lock()) self->on_end(end);
        };
        call_ = ctx_.upstreams.call(ctx_.ioc, std::move(r), std::move(h));
    }

    void on_head(int status, const http::HttpHeaders& headers) {
        std::lock_guard lock(mu_);
        status_ = status;
        for (const auto& [k, v] : headers) {
            if (k == "content-type") content_type_ = v;
            if (k == "x-backend") backend_ = v;
        }
    }

    void on_data(const std::string& data) {
        std::lock_guard lock(mu_);
        body_ += data;
    }

    void on_end(const UpstreamEnd& end) {
        std::lock_guard lock(mu_);
        call_.reset();
        if (!lease_) return;  // abandoned
        if ((!end.complete || status_ >= 500) && retry()) return;
        HttpResponse r;
        if (!end.complete) {
            r = http::error_response(502, "no worker could answer: " + end.error, "service_unavailable");
        } else {
            r.status = status_;
            r.content_type = content_type_;
            r.body = std::move(body_);
        }
        r.headers.emplace_back("X-Worker", lease_->worker().text);
        if (!backend_.empty()) r.headers.emplace_back("X-Backend", backend_);
        answer_ = std::move(r);
        lease_.reset();
        if (notify_) notify_();
    }

    // Another worker not tried yet (mu_ held); false when none is left or the retries are spent.
    bool retry() {
        if (retries_used_ >= ctx_.retries) return false;
        auto choice = ctx_.pool.choose(req_.model, tried_, 0, "retry");
        if (!choice.lease) return false;
        ++retries_used_;
        ctx_.metrics.count_retry();
        lease_ = std::move(choice.lease);
        launch();
        return true;
    }

    ProxyContext ctx_;
    PassthroughRequest req_;
    std::mutex mu_;
    std::function<void()> notify_;
    std::unique_ptr<WorkerPool::Lease> lease_;
    std::shared_ptr<UpstreamCall> call_;
    std::set<std::string> tried_;
    int retries_used_ = 0;
    int status_ = 0;
    std::string content_type_;
    std::string backend_;  // the worker's X-Backend, relayed
    std::string body_;
    std::optional<HttpResponse> answer_;
};

}  // namespace

HttpResponse pass_through(const ProxyContext& ctx, PassthroughRequest req) {
    auto choice = ctx.pool.choose(req.model, {}, 0, "initial");
    if (!choice.lease) return no_worker_response(choice.why, req.model);
    HttpResponse r;
    r.producer = std::make_shared<PassthroughProducer>(ctx, std::move(req), std::move(choice.lease));
    return r;
}

}  // namespace loom::orchestrator
