// The heartbeat client: POST /admin/register {url, secret} to the orchestrator every second on a
// private io_context and thread (Boost.Beast, asynchronous, so every step has a timeout).
#include "worker/registration.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>
#include <thread>

#include "http/url.h"

namespace loom::worker {

namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("worker")) return l;
    return spdlog::default_logger();
}

bool wildcard(const std::string& host) { return host == "0.0.0.0" || host == "::" || host == "[::]" || host.empty(); }

}  // namespace

void check_registration(const RegistrationOptions& o, const std::string& listen_host) {
    const auto parse = [](const char* flag, const std::string& url) {
        try {
            http::parse_http_url(url);
        } catch (const std::invalid_argument& e) {
            throw BadRegistration(std::string(flag) + " '" + url + "': " + e.what() + " (expected http://HOST:PORT)");
        }
    };
    parse("--register", o.orchestrator_url);
    if (o.secret.empty()) throw BadRegistration("--register needs --register-secret (the orchestrator's)");
    if (!o.advertise_url.empty()) {
        parse("--advertise-url", o.advertise_url);
        if (wildcard(http::parse_http_url(o.advertise_url).host))
            throw BadRegistration("--advertise-url " + o.advertise_url +
                                  " names no address the orchestrator can connect to");
    } else if (wildcard(listen_host)) {
        throw BadRegistration("--host " + listen_host +
                              " listens on every address, which the orchestrator cannot connect to: name the "
                              "one it should use with --advertise-url http://HOST:PORT");
    }
}

std::string advertised_url(const RegistrationOptions& o, const std::string& listen_host, uint16_t port) {
    if (!o.advertise_url.empty()) return http::parse_http_url(o.advertise_url).text;
    return "http://" + listen_host + ":" + std::to_string(port);
}

// One heartbeat at a time, all on the private thread: timer -> resolve -> connect -> write -> read.
// Handlers capture `this`: the thread is joined before Impl goes, and the io objects (declared after
// the io_context) are destroyed before it.
struct Registration::Impl {
    net::io_context ioc;
    http::HostPort orchestrator;
    std::string body;
    std::string url;
    net::steady_timer timer{ioc};
    tcp::resolver resolver{ioc};
    std::optional<beast::tcp_stream> stream;
    bhttp::request<bhttp::string_body> req;
    bhttp::response<bhttp::string_body> res;
    beast::flat_buffer buf;
    int failures = 0;
    std::string last_error;  // logged once until it changes or a heartbeat succeeds
    bool registered = false;
    std::thread thread;

    void beat() {
        resolver.async_resolve(orchestrator.host, std::to_string(orchestrator.port),
                               [this](beast::error_code ec, tcp::resolver::results_type r) {
                                   if (ec) return failed("cannot resolve " + orchestrator.host + ": " + ec.message());
                                   connect(r);
                               });
    }

    void connect(const tcp::resolver::results_type& r) {
        stream.emplace(ioc);
        stream->expires_after(kCallTimeout);
        stream->async_connect(r, [this](beast::error_code ec, const tcp::endpoint&) {
            if (ec) return failed("cannot connect: " + ec.message());
            send();
        });
    }

    void send() {
        req = {bhttp::verb::post, "/admin/register", 11};
        req.set(bhttp::field::host, orchestrator.host + ":" + std::to_string(orchestrator.port));
        req.set(bhttp::field::content_type, "application/json");
        req.set(bhttp::field::connection, "close");
        req.body() = body;
        req.prepare_payload();
        res = {};
        buf.clear();
        bhttp::async_write(*stream, req, [this](beast::error_code ec, size_t) {
            if (ec) return failed("cannot send: " + ec.message());
            bhttp::async_read(*stream, buf, res, [this](beast::error_code ec, size_t) {
                if (ec) return failed("no answer: " + ec.message());
                answered();
            });
        });
    }

    void answered() {
        close();
        if (res.result_int() != 200)
            return failed("refused with " + std::to_string(res.result_int()) + ": " + res.body());
        if (!registered || failures > 0)
            log()->info("registered with the orchestrator {} as {}", orchestrator.text, url);
        registered = true;
        failures = 0;
        last_error.clear();
        next(kHeartbeat);
    }

    // Backoff doubles from one heartbeat interval up to kMaxBackoff while failures last.
    void failed(const std::string& why) {
        close();
        ++failures;
        const auto pause = std::min(kMaxBackoff, kHeartbeat * (1 << std::min(failures - 1, 4)));
        if (why != last_error)
            log()->warn("cannot register with the orchestrator {}: {}; retrying every {} ms at most (still serving)",
                        orchestrator.text, why, pause.count());
        last_error = why;
        next(pause);
    }

    void next(std::chrono::milliseconds pause) {
        timer.expires_after(pause);
        timer.async_wait([this](beast::error_code ec) {
            if (!ec) beat();
        });
    }

    void close() {
        if (!stream) return;
        beast::error_code ec;
        stream->socket().shutdown(tcp::socket::shutdown_both, ec);
        stream->close();
    }
};

Registration::Registration(const RegistrationOptions& o, std::string url) : impl_(std::make_unique<Impl>()) {
    impl_->orchestrator = http::parse_http_url(o.orchestrator_url);
    impl_->url = std::move(url);
    impl_->body = nlohmann::json{{"url", impl_->url}, {"secret", o.secret}}.dump();
    net::post(impl_->ioc, [impl = impl_.get()] { impl->beat(); });
    impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

Registration::~Registration() { stop(); }

void Registration::stop() {
    if (!impl_->thread.joinable()) return;
    impl_->ioc.stop();
    impl_->thread.join();
}

}  // namespace loom::worker
