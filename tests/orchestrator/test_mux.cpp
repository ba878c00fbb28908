// loom-mux/1 end to end: HttpServer with enable_mux() on loopback, Upstreams calling it. Many streams
// share one connection and each gets exactly its own bytes; cancel reaches the producer; a server
// without mux is called over HTTP/1.1; a broken connection and a deadline end the calls they hold.
#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "http/http_server.h"
#include "http/mux_frame.h"
#include "orchestrator/upstreams.h"

namespace {

namespace net = boost::asio;
namespace orch = loom::orchestrator;
using loom::http::HttpRequest;
using loom::http::HttpResponse;
using loom::http::MuxType;
using loom::http::ResponseProducer;
using nlohmann::json;

// Produces "tag:0\n", "tag:1\n", ... one line per tick of the Ticker, `n` in all; n < 0: never ends.
class LineProducer : public ResponseProducer {
public:
    LineProducer(std::string tag, int n, std::atomic<int>& abandoned)
        : tag_(std::move(tag)), n_(n), abandoned_(abandoned) {}
    void start(std::function<void()> notify) override {
        std::lock_guard lock(mu_);
        notify_ = std::move(notify);
    }
    Progress poll() override {
        std::lock_guard lock(mu_);
        Progress p;
        p.data = std::move(ready_);
        ready_.clear();
        p.done = n_ >= 0 && made_ >= n_;
        return p;
    }
    void abandoned() override { ++abandoned_; }
    // One more line (from the ticker's thread).
    void tick() {
        std::function<void()> notify;
        {
            std::lock_guard lock(mu_);
            if ((n_ >= 0 && made_ >= n_) || !notify_) return;
            ready_ += tag_ + ":" + std::to_string(made_++) + "\n";
            notify = notify_;
        }
        notify();
    }

private:
    std::mutex mu_;
    const std::string tag_;
    const int n_;
    int made_ = 0;
    std::string ready_;
    std::function<void()> notify_;
    std::atomic<int>& abandoned_;
};

std::string lines(const std::string& tag, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += tag + ":" + std::to_string(i) + "\n";
    return s;
}

// A server whose POST /stream {"tag", "n"} streams lines, and whose POST /whole echoes its body.
struct LineServer {
    explicit LineServer(bool mux) {
        if (mux) server.enable_mux();
        server.route("POST", "/stream", [this](const HttpRequest& req) {
            const json body = json::parse(req.body);
            auto p =
                std::make_shared<LineProducer>(body.at("tag").get<std::string>(), body.at("n").get<int>(), abandoned);
            {
                std::lock_guard lock(mu);
                producers.push_back(p);
            }
            HttpResponse r;
            r.content_type = "text/event-stream";
            r.stream = true;
            r.producer = p;
            return r;
        });
        server.route("POST", "/whole", [](const HttpRequest& req) {
            HttpResponse r;
            r.content_type = "text/plain";
            r.body = "whole:" + req.body + ":" + req.header("authorization");
            return r;
        });
        port = server.listen("127.0.0.1", 0);
        server.start(1);
        ticker = std::thread([this] {
            while (!stop) {
                std::vector<std::weak_ptr<LineProducer>> live;
                {
                    std::lock_guard lock(mu);
                    live = producers;
                }
                for (auto& w : live)
                    if (auto p = w.lock()) p->tick();
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        });
    }
    ~LineServer() {
        stop = true;
        ticker.join();
    }

    loom::http::HttpServer server{"mux-test"};
    uint16_t port = 0;
    std::atomic<int> abandoned{0};
    std::mutex mu;
    std::vector<std::weak_ptr<LineProducer>> producers;
    std::atomic<bool> stop{false};
    std::thread ticker;
};

struct Outcome {
    int status = 0;
    std::string content_type;
    std::string body;
    orch::UpstreamEnd end;
    bool written = false;
};

struct Fixture {
    net::io_context ioc;
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work{net::make_work_guard(ioc)};
    std::thread thread{[this] { ioc.run(); }};
    ~Fixture() {
        work.reset();
        ioc.stop();
        thread.join();
    }
};

// Starts a call; the future is ready at on_end.
std::future<Outcome> start(Fixture& f, orch::Upstreams& up, uint16_t port, const std::string& target,
                           const std::string& body, std::shared_ptr<orch::UpstreamCall>* call = nullptr,
                           std::chrono::milliseconds total = std::chrono::milliseconds(0)) {
    auto promise = std::make_shared<std::promise<Outcome>>();
    auto out = std::make_shared<Outcome>();
    orch::UpstreamRequest r{orch::parse_worker_url("http://127.0.0.1:" + std::to_string(port)),
                            "POST",
                            target,
                            body,
                            {{"Authorization", "Bearer k"}}};
    r.total_timeout = total;
    orch::UpstreamHandlers h;
    h.on_written = [out] { out->written = true; };
    h.on_head = [out](int status, const loom::http::HttpHeaders& headers) {
        out->status = status;
        for (const auto& [k, v] : headers)
            if (k == "content-type") out->content_type = v;
    };
    h.on_data = [out](std::string d) { out->body += d; };
    h.on_end = [out, promise](const orch::UpstreamEnd& end) {
        out->end = end;
        promise->set_value(*out);
    };
    auto c = up.call(f.ioc, std::move(r), std::move(h));
    if (call) *call = c;
    return promise->get_future();
}

double metric(const orch::Upstreams& up, const std::string& name) {
    const std::string text = up.render_metrics();
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

template <class T>
bool ready_within(std::future<T>& f, std::chrono::milliseconds ms) {
    return f.wait_for(ms) == std::future_status::ready;
}

}  // namespace

TEST_CASE("mux frames round-trip, wait for their last byte and refuse what breaks the protocol", "[mux]") {
    std::mt19937 rng(std::random_device{}());
    std::string payload(1 + rng() % 3000, '\0');
    for (char& c : payload) c = static_cast<char>(rng());
    const uint32_t id = static_cast<uint32_t>(rng());
    std::string out;
    loom::http::append_frame(out, MuxType::data, id, payload);
    loom::http::append_frame(out, MuxType::end, id + 1);
    for (size_t cut = 0; cut < loom::http::kMuxHeadBytes + payload.size(); cut += 97) {
        std::string_view partial(out.data(), cut);
        CHECK_FALSE(loom::http::next_frame(partial, 1 << 20).has_value());
        CHECK(partial.size() == cut);
    }
    std::string_view all(out);
    const auto first = loom::http::next_frame(all, 1 << 20);
    REQUIRE(first);
    CHECK((first->type == MuxType::data && first->id == id && first->payload == payload));
    const auto second = loom::http::next_frame(all, 1 << 20);
    REQUIRE(second);
    CHECK((second->type == MuxType::end && second->id == id + 1 && second->payload.empty() && all.empty()));

    std::string_view over(out);
    CHECK_THROWS_AS(loom::http::next_frame(over, payload.size() - 1), loom::http::MuxProtocolError);
    std::string bad = out;
    bad[4] = 9;
    std::string_view bad_view(bad);
    CHECK_THROWS_AS(loom::http::next_frame(bad_view, 1 << 20), loom::http::MuxProtocolError);

    const auto req = loom::http::decode_open(
        loom::http::encode_open("POST", "/v1/x?a=1", {{"Authorization", "Bearer s"}}, payload), "peer");
    CHECK((req.method == "POST" && req.path == "/v1/x" && req.query == "a=1" && req.body == payload));
    CHECK(req.header("authorization") == "Bearer s");
    for (const std::string& broken :
         {std::string("\0\0", 2), std::string("\0\0\0\x40{}", 6), std::string("\0\0\0\x02{}", 6),
          std::string("\0\0\0\x11{\"method\":\"GET\"}", 20)})
        CHECK_THROWS_AS(loom::http::decode_open(broken, "peer"), loom::http::MuxProtocolError);
    const auto [status, headers] =
        loom::http::decode_head(loom::http::encode_head(429, "application/json", {{"Retry-After", "1"}}));
    CHECK(status == 429);
    CHECK(headers == loom::http::HttpHeaders{{"content-type", "application/json"}, {"retry-after", "1"}});
    CHECK_THROWS_AS(loom::http::decode_head("{\"status\":9,\"headers\":[]}"), loom::http::MuxProtocolError);
}

TEST_CASE("300 concurrent streams share one mux connection and each gets exactly its own bytes", "[mux]") {
    LineServer s(true);
    Fixture f;
    orch::Upstreams up(orch::Transport::mux);
    std::vector<std::future<Outcome>> calls;
    std::vector<int> lengths;
    for (int i = 0; i < 300; ++i) {
        lengths.push_back(1 + i % 37);
        calls.push_back(
            start(f, up, s.port, "/stream", json{{"tag", "s" + std::to_string(i)}, {"n", lengths.back()}}.dump()));
    }
    auto whole = start(f, up, s.port, "/whole", "{\"a\":1}");
    for (size_t i = 0; i < calls.size(); ++i) {
        REQUIRE(ready_within(calls[i], std::chrono::milliseconds(20'000)));
        const Outcome o = calls[i].get();
        CHECK(o.end.complete);
        CHECK(o.written);
        CHECK(o.status == 200);
        CHECK(o.content_type == "text/event-stream");
        CHECK(o.body == lines("s" + std::to_string(i), lengths[i]));
    }
    REQUIRE(ready_within(whole, std::chrono::milliseconds(5000)));
    const Outcome w = whole.get();
    CHECK((w.end.complete && w.status == 200 && w.content_type == "text/plain"));
    CHECK(w.body == "whole:{\"a\":1}:Bearer k");  // the body and the headers travel as sent
    CHECK(metric(up, "loom_orchestrator_upstream_calls_total{transport=\"mux\"}") == 301);
    CHECK(metric(up, "loom_orchestrator_upstream_calls_total{transport=\"http\"}") == 0);
    CHECK(metric(up, "loom_orchestrator_upstream_mux_connections") == 1);
    CHECK(s.server.connections() == 1);
    CHECK(s.abandoned == 0);
    up.stop();
}

TEST_CASE("a cancelled mux call stops its producer on the server; the others go on", "[mux]") {
    LineServer s(true);
    Fixture f;
    orch::Upstreams up(orch::Transport::mux);
    std::shared_ptr<orch::UpstreamCall> endless;
    auto cancelled = start(f, up, s.port, "/stream", R"({"tag":"x","n":-1})", &endless);
    auto other = start(f, up, s.port, "/stream", R"({"tag":"y","n":200})");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (s.producers.size() < 2 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    endless->cancel();
    while (s.abandoned == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(s.abandoned == 1);
    REQUIRE(ready_within(other, std::chrono::milliseconds(10'000)));
    CHECK(other.get().body == lines("y", 200));
    CHECK_FALSE(ready_within(cancelled, std::chrono::milliseconds(50)));  // no handler after cancel()
    up.stop();
}

TEST_CASE("a server without mux is called over HTTP/1.1", "[mux]") {
    LineServer s(false);
    Fixture f;
    orch::Upstreams up(orch::Transport::mux);
    for (int i = 0; i < 2; ++i) {
        auto whole = start(f, up, s.port, "/whole", "{}");
        REQUIRE(ready_within(whole, std::chrono::milliseconds(5000)));
        const Outcome w = whole.get();
        CHECK((w.end.complete && w.status == 200 && w.body == "whole:{}:Bearer k"));
    }
    auto stream = start(f, up, s.port, "/stream", R"({"tag":"h","n":20})");
    REQUIRE(ready_within(stream, std::chrono::milliseconds(5000)));
    CHECK(stream.get().body == lines("h", 20));
    CHECK(metric(up, "loom_orchestrator_upstream_mux_refused_total") == 1);  // asked once, remembered
    CHECK(metric(up, "loom_orchestrator_upstream_calls_total{transport=\"http\"}") == 3);
    up.stop();
}

TEST_CASE("a mux connection that breaks ends its calls with the cause; a deadline ends a call", "[mux]") {
    auto s = std::make_unique<LineServer>(true);
    const uint16_t port = s->port;
    Fixture f;
    orch::Upstreams up(orch::Transport::mux);
    auto late = start(f, up, port, "/stream", R"({"tag":"t","n":-1})", nullptr, std::chrono::milliseconds(300));
    REQUIRE(ready_within(late, std::chrono::milliseconds(5000)));
    const Outcome t = late.get();
    CHECK((!t.end.complete && t.end.timed_out && t.status == 200 && !t.body.empty()));

    auto a = start(f, up, port, "/stream", R"({"tag":"a","n":-1})");
    auto b = start(f, up, port, "/stream", R"({"tag":"b","n":-1})");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s.reset();  // the server's sockets close with it
    for (auto* c : {&a, &b}) {
        REQUIRE(ready_within(*c, std::chrono::milliseconds(5000)));
        const Outcome o = c->get();
        CHECK_FALSE(o.end.complete);
        CHECK(o.end.error.find("broke off") != std::string::npos);
    }
    auto refused = start(f, up, port, "/whole", "{}");  // nobody listens now: a new connection fails
    REQUIRE(ready_within(refused, std::chrono::milliseconds(5000)));
    CHECK(refused.get().end.error.find("cannot connect") != std::string::npos);
    up.stop();
}
