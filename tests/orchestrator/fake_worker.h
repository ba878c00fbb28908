// A fake worker on loopback for the orchestrator's polls and scrapes: one fixed answer to every GET,
// kept alive, one connection at a time on its own thread, counting the connections it accepted.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <sys/socket.h>
#include <thread>

namespace loom::test {

// Reads one request head (GETs: no body); false at end of stream.
inline bool read_request(boost::asio::ip::tcp::socket& s) {
    std::string got;
    char c;
    boost::system::error_code ec;
    while (got.size() < 4 || got.compare(got.size() - 4, 4, "\r\n\r\n") != 0) {
        if (boost::asio::read(s, boost::asio::buffer(&c, 1), ec) != 1) return false;
        got += c;
    }
    return true;
}

// Every request gets `body` as `content_type`. With `drop_at`, the request that would get answer
// number drop_at + 1 is read and its connection closed without an answer (a worker closing an idle
// connection just as it is reused).
class FakeWorker {
public:
    FakeWorker(std::string body, std::string content_type, uint16_t port = 0, int drop_at = -1)
        : acceptor_(ioc_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port)),
          answer_("HTTP/1.1 200 OK\r\nContent-Type: " + content_type +
                  "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body),
          drop_at_(drop_at) {
        thread_ = std::thread([this] { serve(); });
    }
    // Dies: its port and its connections close.
    ~FakeWorker() {
        stopping_ = true;
        ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
        if (const int fd = connection_; fd >= 0) ::shutdown(fd, SHUT_RDWR);
        thread_.join();
    }
    FakeWorker(const FakeWorker&) = delete;
    FakeWorker& operator=(const FakeWorker&) = delete;
    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int accepted() const { return accepted_; }
    int answered() const { return answered_; }

private:
    using tcp = boost::asio::ip::tcp;

    void serve() {
        while (!stopping_) {
            boost::system::error_code ec;
            tcp::socket s(ioc_);
            acceptor_.accept(s, ec);
            if (ec) return;
            ++accepted_;
            connection_ = s.native_handle();
            while (!stopping_ && read_request(s)) {
                if (drop_at_ >= 0 && answered_ == drop_at_) {
                    drop_at_ = -1;
                    break;
                }
                boost::asio::write(s, boost::asio::buffer(answer_), ec);
                if (ec) break;
                ++answered_;
            }
            connection_ = -1;
        }
    }

    boost::asio::io_context ioc_;
    tcp::acceptor acceptor_;
    const std::string answer_;
    std::atomic<int> drop_at_;
    std::atomic<int> accepted_{0}, answered_{0}, connection_{-1};
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

// Polls `pred` every 10 ms until it holds (true) or `limit` passed (false).
inline bool eventually(const std::function<bool()>& pred, std::chrono::seconds limit = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

}  // namespace loom::test
