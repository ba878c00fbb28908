// ProxyProducer: the state of one proxied generation. Upstream handlers and poll() run on the client
// connection's thread; the queue, the pool's ejections and timeouts call in from others; mu_ orders them.
#include "orchestrator/proxy.h"

#include <algorithm>
#include <sstream>
#include <spdlog/spdlog.h>

namespace loom::orchestrator {

using http::HttpResponse;
using nlohmann::json;

namespace {

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("orchestrator")) return l;
    return spdlog::default_logger();
}

// The load a request adds before anything is known of its prompt: what it may still generate,
// plus a constant for its prompt.
constexpr int64_t kPromptTokensGuess = 32;
constexpr int64_t kDefaultMaxTokens = 256;
constexpr int64_t kCompletionsDefaultMaxTokens = 16;  // the worker's default for /v1/completions

std::string sse(const json& j) { return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; }

std::string target_of(bool chat) { return chat ? "/v1/chat/completions" : "/v1/completions"; }

// A chat request's fields as a completions continuation's (the prompt is set by the caller):
// logprobs true + top_logprobs N becomes logprobs N with chat's shape kept (chat_logprobs).
void chat_to_completions(json& body) {
    const bool logprobs = body.contains("logprobs") && body["logprobs"].is_boolean() && body["logprobs"].get<bool>();
    const json top = body.contains("top_logprobs") ? body["top_logprobs"] : json(0);
    for (const char* chat_only :
         {"messages", "max_completion_tokens", "logprobs", "top_logprobs", "add_generation_prompt"})
        body.erase(chat_only);
    if (!logprobs) return;
    body["logprobs"] = top.is_number_integer() ? top : json(0);
    body["chat_logprobs"] = true;
}

}  // namespace

int64_t initial_load(const ProxiedRequest& req) {
    return req.max_tokens.value_or(kDefaultMaxTokens) + kPromptTokensGuess;
}

ProxyProducer::~ProxyProducer() {
    if (call_) call_->cancel();
}

std::optional<HttpResponse> ProxyProducer::route() {
    std::lock_guard lock(mu_);
    int64_t prompt_tokens = kPromptTokensGuess;
    WorkerPool::Preference prefer;
    if (ctx_.router) {
        PrefixRouter::Plan plan = ctx_.router->plan(req_.model, req_.body, req_.chat, req_.session);
        prompt_tokens = plan.prompt_tokens.value_or(kPromptTokensGuess);
        prefer = ctx_.router->preference(std::move(plan));
    }
    const int64_t tokens = req_.max_tokens.value_or(kDefaultMaxTokens) + prompt_tokens;
    auto d = ctx_.admission.admit(shared_from_this(), req_.model, req_.admission.priority, tokens, std::move(prefer));
    if (d.refusal) return std::move(d.refusal);
    lease_ = std::move(d.lease);
    ticket_ = d.ticket;
    if (ticket_)
        log()->debug("{}: every worker is full; queued as {}", req_.id, priority_name(req_.admission.priority));
    arm_timeout();
    return std::nullopt;
}

void ProxyProducer::start(std::function<void()> notify) {
    std::lock_guard lock(mu_);
    notify_ = std::move(notify);
    if (launched_ || ticket_) return;  // the second start (a whole answer turned stream), or queued
    if (answer_) return wake();        // refused or timed out while queued
    begin();
}

void ProxyProducer::admitted(std::unique_ptr<WorkerPool::Lease> lease) {
    std::lock_guard lock(mu_);
    if (abandoned_ || !ticket_) return;  // left or timed out meanwhile: the lease goes back
    ticket_.reset();
    lease_ = std::move(lease);
    if (notify_) begin();  // else start() will
}

void ProxyProducer::refused(HttpResponse response) {
    std::lock_guard lock(mu_);
    if (abandoned_ || !ticket_) return;
    ticket_.reset();
    for (auto& h : headers()) response.headers.push_back(std::move(h));
    ctx_.metrics.count_request("", response.status);  // a refusal: the name may be unknown
    log_end(response.status, "refused");
    answer_ = std::move(response);
    wake();
}

// The first call upstream, once the request has its worker (mu_ held).
void ProxyProducer::begin() {
    launched_ = true;
    rules_ = RelayRules{req_.id, req_.chat, req_.want_token_ids, false, 0, req_.preset};
    launch(target_of(req_.chat), req_.body);
}

// The timeout counts from the request's arrival, its time in the queue included (mu_ held).
void ProxyProducer::arm_timeout() {
    if (!req_.admission.timeout_s) return;
    deadline_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(*req_.admission.timeout_s)));
    std::weak_ptr<ProxyProducer> weak = weak_from_this();
    deadline_.async_wait([weak](boost::system::error_code ec) {
        if (auto self = weak.lock(); self && !ec) self->on_timeout();
    });
}

// Out of time: out of the queue, or the upstream call cancelled (the worker frees the sequence); a
// whole answer becomes a 504, a stream already started ends with an error event and [DONE].
void ProxyProducer::on_timeout() {
    std::lock_guard lock(mu_);
    if (abandoned_ || done_ || done_seen_ || (answer_given_ && !committed_) || (answer_ && !committed_)) return;
    ctx_.admission.count_timeout();
    if (ticket_) ctx_.admission.withdraw(*ticket_);
    ticket_.reset();
    if (call_) call_->cancel();
    call_.reset();
    ++call_number_;  // whatever the cancelled call still delivers is ignored
    std::ostringstream limit;
    limit << *req_.admission.timeout_s;
    const std::string message = "the request did not finish within its timeout of " + limit.str() + " s";
    log()->info("{}: {}", req_.id, message);
    log_end(committed_ ? 200 : 504, "timeout");
    if (committed_) {
        out_ += sse(
            {{"error", {{"message", message}, {"type", "timeout_error"}, {"param", "timeout"}, {"code", "timeout"}}}});
        out_ += "data: [DONE]\n\n";
        done_ = true;
    } else {
        HttpResponse r = http::error_response(504, message, "timeout_error", "timeout", "timeout");
        for (auto& h : headers()) r.headers.push_back(std::move(h));
        ctx_.metrics.count_request(req_.model, 504);  // admitted: a model a worker has
        answer_ = std::move(r);
    }
    lease_.reset();
    wake();
}

// Sends `body` to the leased worker (mu_ held).
void ProxyProducer::launch(const std::string& target, const json& body) {
    status_ = 0;
    upstream_id_.clear();
    body_.clear();
    pending_.clear();
    done_seen_ = false;
    tried_.insert(lease_->worker().text);
    UpstreamRequest r{lease_->worker(), "POST", target, body.dump(), {}};
    if (!req_.authorization.empty()) r.headers.emplace_back("Authorization", req_.authorization);
    std::weak_ptr<ProxyProducer> weak = weak_from_this();
    const uint64_t n = ++call_number_;
    UpstreamHandlers h;
    h.on_written = [weak, n] {
        if (auto self = weak.lock()) self->on_written(n);
    };
    h.on_head = [weak, n](int status, const http::HttpHeaders& headers) {
        if (auto self = weak.lock()) self->on_head(n, status, headers);
    };
    h.on_data = [weak, n](std::string data) {
        if (auto self = weak.lock()) self->on_data(n, std::move(data));
    };
    h.on_end = [weak, n](const UpstreamEnd& end) {
        if (auto self = weak.lock()) self->on_end(n, end);
    };
    call_ = ctx_.upstreams.call(ctx_.ioc, std::move(r), std::move(h));
}

// The first request written upstream ends what the orchestrator added before the worker could start.
void ProxyProducer::on_written(uint64_t call) {
    std::lock_guard lock(mu_);
    if (call != call_number_ || request_latency_seen_) return;
    request_latency_seen_ = true;
    ctx_.metrics.observe_added_latency(
        "request", std::chrono::duration<double>(std::chrono::steady_clock::now() - req_.arrived).count());
}

void ProxyProducer::on_head(uint64_t call, int status, const http::HttpHeaders& headers) {
    std::lock_guard lock(mu_);
    if (call != call_number_) return;
    status_ = status;
    for (const auto& [k, v] : headers) {
        if (k == "x-request-id") upstream_id_ = v;
        if (k == "x-backend" && !committed_) backend_ = v;  // a stream's head names its first worker's
    }
    if (status == 200 && req_.stream && !committed_) {
        committed_ = true;
        HttpResponse head;
        head.content_type = "text/event-stream";
        head.headers = this->headers();
        head.stream = true;
        head.producer = shared_from_this();
        answer_ = std::move(head);
        ctx_.metrics.count_request(req_.model, 200);
        wake();
    }
}

void ProxyProducer::on_data(uint64_t call, std::string data) {
    const auto arrived = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    if (call != call_number_) return;
    if (status_ == 200 && req_.stream) {
        pending_ += data;
        const size_t before = out_.size();
        relay_events();
        if (out_.size() > before) out_arrivals_.push_back(arrived);
    } else {
        body_ += data;
    }
}

// Turns the complete events in pending_ into the client's events (mu_ held).
void ProxyProducer::relay_events() {
    size_t end;
    while ((end = pending_.find("\n\n")) != std::string::npos) {
        std::string event = pending_.substr(0, end);
        pending_.erase(0, end + 2);
        if (event.rfind("data: ", 0) == 0) event.erase(0, 6);
        if (event == "[DONE]") {
            done_seen_ = true;
            out_ += "data: [DONE]\n\n";
            continue;
        }
        json j = json::parse(event, nullptr, false);
        if (j.is_discarded()) continue;  // a worker never sends this; nothing a client could use
        const ChunkTokens t = rewrite_chunk(j, rules_);
        if (prompt_ids_.empty() && !rules_.continuation) prompt_ids_ = t.prompt_ids;
        relayed_ids_.insert(relayed_ids_.end(), t.ids.begin(), t.ids.end());
        if (lease_) lease_->produced(static_cast<int64_t>(t.ids.size()));
        note_tokens(t.ids.size(), j);
        if (req_.chat && j.contains("choices") && j["choices"].is_array()) {
            // A request sent again from the start repeats the role chunk the client already has.
            json kept = json::array();
            for (json& c : j["choices"]) {
                const bool has_role = c.contains("delta") && c["delta"].contains("role");
                if (has_role && role_sent_) {
                    c["delta"].erase("role");
                    if (c["delta"].empty() && c.value("finish_reason", json()).is_null() && t.ids.empty()) continue;
                }
                role_sent_ = role_sent_ || has_role;
                kept.push_back(std::move(c));
            }
            const bool had_choices = !j["choices"].empty();
            j["choices"] = std::move(kept);
            if (had_choices && j["choices"].empty()) continue;
        }
        out_ += sse(j);
    }
    wake();
}

void ProxyProducer::on_end(uint64_t call, const UpstreamEnd& end) {
    std::lock_guard lock(mu_);
    if (call != call_number_) return;
    call_.reset();
    if (abandoned_) return;
    if (committed_) {
        if (status_ == 200 && done_seen_) {
            done_ = true;
            log_end(200, "");
            lease_.reset();
            return wake();
        }
        // Broken before [DONE], or a continuation refused: carry on elsewhere.
        return fail_over(status_ == 0 || status_ == 200);
    }
    const bool retryable = !end.complete || status_ >= 500 || status_ == 429;
    if (retryable && retry()) return;
    answer_whole(end);
}

void ProxyProducer::worker_lost(const std::string& url) {
    std::lock_guard lock(mu_);
    if (abandoned_ || done_ || done_seen_ || !call_ || !lease_ || lease_->worker().text != url) return;
    log()->warn("{}: {} stopped answering its health checks", req_.id, url);
    call_->cancel();
    call_.reset();
    ++call_number_;  // whatever the cancelled call still delivers is ignored
    if (committed_) return fail_over(true);
    if (!retry()) answer_whole(UpstreamEnd{false, true, "the worker " + url + " stopped answering"});
}

// A whole answer (or an upstream error, relayed as it came) for the client (mu_ held).
void ProxyProducer::answer_whole(const UpstreamEnd& end) {
    HttpResponse r;
    if (!end.complete) {
        r = http::error_response(502, "no worker could answer: " + end.error, "service_unavailable");
    } else {
        r.status = status_;
        json j = json::parse(body_, nullptr, false);
        if (status_ == 200 && !j.is_discarded()) {
            const ChunkTokens t = rewrite_chunk(j, rules_);
            whole_prompt_tokens_ = static_cast<int64_t>(t.prompt_ids.size());
            whole_completion_tokens_ = static_cast<int64_t>(t.ids.size());
            note_tokens(t.ids.size(), j);
            r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
        } else {
            r.body = body_;
        }
    }
    for (auto& h : headers()) r.headers.push_back(std::move(h));
    ctx_.metrics.count_request(req_.model, r.status);
    log_end(r.status, r.status == 200 ? "" : "error");
    answer_ = std::move(r);
    lease_.reset();
    wake();
}

// Before the client has a byte: the same request on another worker. False when none is left.
bool ProxyProducer::retry() {
    if (retries_used_ >= ctx_.retries) return false;
    const std::string failed = lease_->worker().text;
    auto choice =
        ctx_.pool.choose(req_.model, tried_, req_.max_tokens.value_or(kDefaultMaxTokens) + kPromptTokensGuess, "retry");
    if (!choice.lease) return false;
    ++retries_used_;
    ctx_.metrics.count_retry();
    lease_ = std::move(choice.lease);
    log()->info("{}: {} failed before the first byte (status {}); retrying on {}", req_.id, failed, status_,
                lease_->worker().text);
    launch(target_of(req_.chat), req_.body);
    return true;
}

// The stream broke mid-way: the prompt ids and the tokens already relayed become the prompt of a
// /v1/completions request on another worker, resumed at step relayed_ids_.size() with the same
// seed and sampling fields; the client's stream goes on as if nothing happened (mu_ held).
void ProxyProducer::fail_over(bool connection_broke) {
    const std::string failed = lease_ ? lease_->worker().text : "";
    if (connection_broke && !failed.empty()) ctx_.pool.mark_unhealthy(failed);
    const auto produced = static_cast<int64_t>(relayed_ids_.size());
    const int64_t left = req_.max_tokens.value_or(kDefaultMaxTokens + produced) - produced;
    auto choice = ctx_.pool.choose(req_.model, tried_, left + kPromptTokensGuess, "failover");
    ctx_.metrics.count_failover(choice.lease != nullptr);
    if (!choice.lease)
        return finish_with_error("the worker serving this stream (" + failed +
                                 ") failed and no other worker could continue it");
    lease_ = std::move(choice.lease);
    log()->warn("{}: the stream from {} broke after {} tokens; continuing on {}", req_.id, failed, produced,
                lease_->worker().text);
    if (relayed_ids_.empty() || prompt_ids_.empty()) {
        // Nothing generated reached the client: the same request again gives the same answer.
        return launch(target_of(req_.chat), req_.body);
    }
    json body = req_.body;
    if (req_.chat) chat_to_completions(body);
    std::vector<int> prompt = prompt_ids_;
    prompt.insert(prompt.end(), relayed_ids_.begin(), relayed_ids_.end());
    body["prompt"] = prompt;
    body["resume_tokens"] = produced;
    body["max_tokens"] = remaining_tokens(prompt.size());
    body["stream"] = true;
    body["return_token_ids"] = true;
    rules_.continuation = true;
    rules_.resumed = produced;
    launch("/v1/completions", body);
}

// max_tokens for a continuation whose prompt has `prompt_size` tokens: what the client's limit leaves;
// without one, what the worker's default would have left: completions' 16 (docs/API.md), chat's
// whole context (the room left is the same for the continuation's longer prompt).
int64_t ProxyProducer::remaining_tokens(size_t prompt_size) const {
    const auto produced = static_cast<int64_t>(relayed_ids_.size());
    if (req_.max_tokens) return *req_.max_tokens - produced;
    if (!req_.chat) return kCompletionsDefaultMaxTokens - produced;
    return std::max<int64_t>(1, lease_->context_size() - static_cast<int64_t>(prompt_size));
}

// The stream cannot go on: an error event in OpenAI's shape, then [DONE] (mu_ held).
void ProxyProducer::finish_with_error(const std::string& message) {
    log()->error("{}: {}", req_.id, message);
    out_ +=
        sse({{"error",
              {{"message", message}, {"type", "service_unavailable"}, {"param", nullptr}, {"code", "worker_failed"}}}});
    out_ += "data: [DONE]\n\n";
    done_ = true;
    log_end(200, "error");
    lease_.reset();
    wake();
}

http::HttpHeaders ProxyProducer::headers() const {
    http::HttpHeaders h{
        {"X-Request-Id", req_.id}, {"X-Seed", req_.seed}, {"X-Worker", lease_ ? lease_->worker().text : std::string()}};
    if (!backend_.empty()) h.emplace_back("X-Backend", backend_);
    return h;
}

ProxyProducer::Progress ProxyProducer::poll() {
    std::lock_guard lock(mu_);
    Progress p;
    if (!answer_given_) {
        if (!answer_) return p;
        answer_given_ = true;
        p.done = true;
        p.whole = std::move(*answer_);
        return p;
    }
    p.data = std::move(out_);
    out_.clear();
    const auto now = std::chrono::steady_clock::now();
    for (const auto& t : out_arrivals_)
        ctx_.metrics.observe_added_latency("chunk", std::chrono::duration<double>(now - t).count());
    out_arrivals_.clear();
    p.done = done_;
    return p;
}

void ProxyProducer::abandoned() {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    if (launched_ && !done_) log_end(committed_ ? 200 : 0, "abandoned");
    if (ticket_) ctx_.admission.withdraw(*ticket_);  // a queued request leaves the queue at once
    ticket_.reset();
    deadline_.cancel();
    if (call_) call_->cancel();  // the worker sees its client leave and frees the sequence
    call_.reset();
    lease_.reset();
}

std::optional<std::pair<WorkerUrl, std::string>> ProxyProducer::live_upstream() const {
    std::lock_guard lock(mu_);
    if (!call_ || !lease_ || upstream_id_.empty()) return std::nullopt;
    return std::make_pair(lease_->worker(), upstream_id_);
}

// Generated tokens relayed now (a stream's chunk or a whole answer): the worker's tokens/s, the first
// token's time and the finish reason (mu_ held).
void ProxyProducer::note_tokens(size_t generated, const json& chunk) {
    if (chunk.contains("choices") && chunk["choices"].is_array())
        for (const json& c : chunk["choices"])
            if (c.is_object() && c.contains("finish_reason") && c["finish_reason"].is_string())
                finish_reason_ = c["finish_reason"];
    if (generated == 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (!first_token_at_) first_token_at_ = now;
    last_token_at_ = now;
    if (ctx_.requests && lease_) ctx_.requests->count_tokens(lease_->worker().text, static_cast<int64_t>(generated));
}

// The request ended: one record in the request log; `reason` overrides the worker's finish reason
// when not empty (mu_ held, before the lease goes).
void ProxyProducer::log_end(int status, const std::string& reason) {
    if (!ctx_.requests || logged_) return;
    logged_ = true;
    const auto now = std::chrono::steady_clock::now();
    const auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
    RequestRecord r;
    r.id = req_.id;
    r.model = req_.preset.empty() ? req_.model : req_.preset;  // the dashboard shows what the client asked for
    r.endpoint = req_.chat ? "chat" : "completions";
    r.stream = req_.stream;
    r.status = status;
    r.worker = lease_ ? lease_->worker().text : "";
    r.backend = backend_;
    r.prompt_tokens = req_.stream ? static_cast<int64_t>(prompt_ids_.size()) : whole_prompt_tokens_;
    r.completion_tokens = req_.stream ? static_cast<int64_t>(relayed_ids_.size()) : whole_completion_tokens_;
    r.duration_s = seconds(now - req_.arrived);
    if (req_.stream && first_token_at_) {
        r.ttft_s = seconds(*first_token_at_ - req_.arrived);
        const double decode = seconds(*last_token_at_ - *first_token_at_);
        if (r.completion_tokens > 1 && decode > 0) r.tokens_per_s = (r.completion_tokens - 1) / decode;
    } else if (!req_.stream && r.completion_tokens > 0 && r.duration_s > 0) {
        r.tokens_per_s = r.completion_tokens / r.duration_s;
    }
    r.finish_reason = reason.empty() ? finish_reason_ : reason;
    ctx_.requests->add(std::move(r));
}

void ProxyProducer::wake() {
    if (notify_) notify_();
}

}  // namespace loom::orchestrator
