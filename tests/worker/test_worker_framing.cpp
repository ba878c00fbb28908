// loom-worker's HTTP framing under hostile and careless clients, byte for byte over raw sockets:
// HTTP/1.0 streams, Transfer-Encoding smuggling, HEAD, Host, and running out of file descriptors.
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "support/test_data.h"
#include "support/worker_process.h"
#include "worker/http_client.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct RawResponse {
    int status = 0;
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;

    bool has(const std::string& name) const { return headers.count(name) > 0; }
};

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// One TCP connection with exact bytes out and a hand-written HTTP/1.1 response reader.
class RawClient {
public:
    explicit RawClient(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
        REQUIRE(fd_ >= 0);
        timeval tv{10, 0};  // no read waits longer: a hung server fails the test
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    ~RawClient() { close(fd_); }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    void send(const std::string& bytes) {
        size_t sent = 0;
        while (sent < bytes.size()) {
            const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            REQUIRE(n > 0);
            sent += static_cast<size_t>(n);
        }
    }

    // One response; `head_request`: a response to HEAD, which has no body whatever it announces.
    RawResponse read_response(bool head_request = false) {
        RawResponse r;
        size_t end;
        while ((end = buf_.find("\r\n\r\n")) == std::string::npos) REQUIRE(fill());
        std::istringstream head(buf_.substr(0, end));
        buf_.erase(0, end + 4);
        std::string line;
        std::getline(head, line);
        INFO("status line: " << line);
        REQUIRE(line.rfind("HTTP/1.", 0) == 0);
        r.status = std::stoi(line.substr(9, 3));
        while (std::getline(head, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            const size_t colon = line.find(':');
            REQUIRE(colon != std::string::npos);
            r.headers[lower(line.substr(0, colon))] = line.substr(line.find_first_not_of(' ', colon + 1));
        }
        if (head_request || r.status == 100) return r;
        if (r.has("content-length")) {
            r.body = take(std::stoul(r.headers["content-length"]));
        } else if (r.has("transfer-encoding")) {
            r.body = read_chunked();
        } else {
            r.body = read_to_close();
        }
        return r;
    }

    // Everything until the server closes.
    std::string read_to_close() {
        while (fill()) {}
        return std::exchange(buf_, {});
    }

    // Whether the server closed the connection (EOF or reset) with nothing more sent.
    bool closed_by_server() {
        if (!buf_.empty()) return false;
        char c;
        const ssize_t n = recv(fd_, &c, 1, 0);
        return n == 0 || (n < 0 && errno == ECONNRESET);
    }

private:
    // Reads more into the buffer; false at EOF (or reset).
    bool fill() {
        char tmp[8192];
        const ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) FAIL("no answer within 10 s");
        if (n <= 0) return false;
        buf_.append(tmp, static_cast<size_t>(n));
        return true;
    }

    std::string take(size_t n) {
        while (buf_.size() < n) REQUIRE(fill());
        std::string out = buf_.substr(0, n);
        buf_.erase(0, n);
        return out;
    }

    std::string read_chunked() {
        std::string body;
        for (;;) {
            size_t eol;
            while ((eol = buf_.find("\r\n")) == std::string::npos) REQUIRE(fill());
            const size_t size = std::stoul(buf_.substr(0, eol), nullptr, 16);
            buf_.erase(0, eol + 2);
            body += take(size);
            REQUIRE(take(2) == "\r\n");
            if (size == 0) return body;
        }
    }

    int fd_;
    std::string buf_;
};

// The worker most cases share (stories260K on the CPU).
loom::test::WorkerProcess& worker() {
    static loom::test::WorkerProcess w(loom::test::require_stories260k(), "cpu", {});
    return w;
}

std::string post_bytes(const std::string& path, const std::string& body, const std::string& version,
                       const std::string& extra_headers = "Host: x\r\n") {
    return "POST " + path + " " + version + "\r\n" + extra_headers +
           "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

const std::string kChatStream =
    R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0, "stream": true})";

// The "message" of an {"error": {...}} body.
std::string error_message(const RawResponse& r) {
    return json::parse(r.body).at("error").at("message").get<std::string>();
}

}  // namespace

TEST_CASE("HTTP/1.0: a stream comes unchunked and ends with the connection", "[framing]") {
    RawClient c(worker().port());
    c.send(post_bytes("/v1/chat/completions", kChatStream, "HTTP/1.0", ""));
    const RawResponse r = c.read_response();  // no framing header: read to the close
    REQUIRE(r.status == 200);
    CHECK_FALSE(r.has("transfer-encoding"));
    CHECK_FALSE(r.has("content-length"));
    CHECK(lower(r.headers.at("connection")) == "close");
    CHECK(r.headers.at("content-type") == "text/event-stream");
    INFO(r.body);
    REQUIRE(r.body.rfind("data: {", 0) == 0);
    REQUIRE(r.body.size() > 16);
    CHECK(r.body.substr(r.body.size() - 14) == "data: [DONE]\n\n");
    // Every event is whole JSON: no chunk-size lines crept in.
    std::istringstream events(r.body);
    std::string line;
    int chunks = 0;
    while (std::getline(events, line)) {
        if (line.empty() || line == "data: [DONE]") continue;
        REQUIRE(line.rfind("data: ", 0) == 0);
        CHECK(json::parse(line.substr(6)).at("object") == "chat.completion.chunk");
        ++chunks;
    }
    CHECK(chunks >= 2);
    CHECK(c.closed_by_server());
}

TEST_CASE("HTTP/1.0: whole answers, keep-alive on request, no Host needed", "[framing]") {
    {
        RawClient c(worker().port());
        c.send(post_bytes("/v1/completions", R"({"prompt": "Hi", "max_tokens": 2})", "HTTP/1.0", ""));
        const RawResponse r = c.read_response();
        REQUIRE(r.status == 200);
        CHECK(r.has("content-length"));
        CHECK(json::parse(r.body).at("usage").at("completion_tokens") == 2);
        CHECK(c.closed_by_server());
    }
    RawClient c(worker().port());
    c.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const RawResponse first = c.read_response();
    REQUIRE(first.status == 200);
    CHECK(lower(first.headers.at("connection")) == "keep-alive");
    c.send("GET /v1/models HTTP/1.0\r\n\r\n");
    const RawResponse second = c.read_response();
    CHECK(second.status == 200);
    CHECK(json::parse(second.body).at("object") == "list");
    CHECK(c.closed_by_server());
}

TEST_CASE("Transfer-Encoding other than one 'chunked': 400 naming it, then the connection closes", "[framing]") {
    // After each head: a chunked body, then a request a lenient server would run as a second one.
    const std::string body = "5\r\n{\"a\":\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    struct Case {
        std::string headers;
        std::string names;  // in the error message
    };
    const std::vector<Case> cases = {
        {"Transfer-Encoding: identity\r\n", "unsupported Transfer-Encoding 'identity'"},
        {"Transfer-Encoding: gzip\r\n", "unsupported Transfer-Encoding 'gzip'"},
        {"Transfer-Encoding: xchunked\r\n", "unsupported Transfer-Encoding 'xchunked'"},
        {"Transfer-Encoding: chunked, identity\r\n", "unsupported Transfer-Encoding 'chunked, identity'"},
        {"Transfer-Encoding: gzip, chunked\r\n", "unsupported Transfer-Encoding 'gzip, chunked'"},
        {"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n", "more than one Transfer-Encoding"},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding"},
        {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "Content-Length"},
        {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding"},
        {"Transfer-Encoding: identity\r\nContent-Length: 5\r\n", "unsupported Transfer-Encoding 'identity'"},
    };
    for (const auto& c : cases) {
        INFO(c.headers);
        RawClient client(worker().port());
        client.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + c.headers +
                    "\r\n" + body);
        const RawResponse r = client.read_response();
        INFO(r.body);
        CHECK(r.status == 400);
        CHECK(error_message(r).find(c.names) != std::string::npos);
        CHECK(json::parse(r.body)["error"]["type"] == "invalid_request_error");
        CHECK(lower(r.headers.at("connection")) == "close");
        CHECK(client.closed_by_server());
    }
    // HTTP/1.0 knows no Transfer-Encoding.
    RawClient client(worker().port());
    client.send("POST /v1/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + body);
    const RawResponse r = client.read_response();
    CHECK(r.status == 400);
    CHECK(error_message(r).find("HTTP/1.0") != std::string::npos);
    CHECK(client.closed_by_server());
}

TEST_CASE("a chunked request body still works, and the connection stays usable", "[framing]") {
    RawClient c(worker().port());
    const auto chunk = [](const std::string& data) {
        std::ostringstream out;
        out << std::hex << data.size() << "\r\n" << data << "\r\n";
        return out.str();
    };
    c.send(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n" +
        chunk("{\"prompt\":") + chunk(" \"Hi\", \"max_tokens\": 3}") + "0\r\n\r\n");
    const RawResponse r = c.read_response();
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(json::parse(r.body).at("usage").at("completion_tokens") == 3);
    c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(c.read_response().status == 200);
}

TEST_CASE("HEAD: the GET route's head without a body, so keep-alive stays in step", "[framing]") {
    RawClient c(worker().port());
    c.send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    const RawResponse head = c.read_response(true);
    CHECK(head.status == 200);
    CHECK(head.headers.at("content-type") == "application/json");
    CHECK(std::stoul(head.headers.at("content-length")) > 0);
    const RawResponse get = c.read_response();  // would start inside a body sent after the HEAD
    REQUIRE(get.status == 200);
    CHECK(json::parse(get.body).at("status") == "ok");

    c.send("HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    const RawResponse models_head = c.read_response(true);
    const RawResponse models = c.read_response();
    REQUIRE(models.status == 200);
    CHECK(models_head.status == 200);
    CHECK(models_head.headers.at("content-length") == std::to_string(models.body.size()));

    c.send(
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nHEAD /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n"
        "HEAD /v1/completions HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(c.read_response(true).status == 200);
    CHECK(c.read_response(true).status == 404);
    const RawResponse not_allowed = c.read_response(true);
    CHECK(not_allowed.status == 405);
    CHECK(not_allowed.headers.at("allow") == "POST");
    const RawResponse last = c.read_response();
    REQUIRE(last.status == 200);
    CHECK(json::parse(last.body).at("status") == "ok");
}

TEST_CASE("HEAD behind an API key: 401 without it, 200 with it, never a body", "[framing]") {
    loom::test::WorkerProcess guarded(loom::test::require_stories260k(), "cpu", {"--api-key", "sesame"});
    RawClient c(guarded.port());
    c.send(
        "HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
        "HEAD /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\n\r\n"
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(c.read_response(true).status == 401);
    CHECK(c.read_response(true).status == 200);
    const RawResponse health = c.read_response();
    REQUIRE(health.status == 200);
    CHECK(json::parse(health.body).at("status") == "ok");
}

TEST_CASE("Host: required once in HTTP/1.1", "[framing]") {
    for (const std::string& head : {std::string("GET /health HTTP/1.1\r\n\r\n"),
                                    std::string("GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
                                    std::string("GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")}) {
        INFO(head);
        RawClient c(worker().port());
        c.send(head);
        const RawResponse r = c.read_response();
        CHECK(r.status == 400);
        CHECK(error_message(r).find("Host") != std::string::npos);
        CHECK(c.closed_by_server());
    }
    RawClient c(worker().port());
    c.send("GET /health HTTP/1.1\r\nHost: \r\n\r\n");  // empty, as RFC 9112 allows
    CHECK(c.read_response().status == 200);
}

// utime + stime of a process, in seconds.
double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // the name may hold spaces
    std::string f;
    std::vector<std::string> v;
    while (fields >> f) v.push_back(f);
    REQUIRE(v.size() > 13);
    return static_cast<double>(std::stoull(v[11]) + std::stoull(v[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

TEST_CASE("out of file descriptors: no spinning, no log flood, open connections served, recovery", "[framing]") {
#ifdef LOOM_SANITIZED
    // UBSan's vptr check validates an object through a pipe, which it cannot open while the worker
    // is out of descriptors: it reports the next uncached virtual call as a bad vptr and aborts.
    WARN("not run under the sanitizers: their vptr check needs free descriptors");
    return;
#endif
    const std::vector<std::string> limited = {"/bin/sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""};
    loom::test::WorkerProcess w(loom::test::require_stories260k(), "cpu", {}, std::chrono::seconds(120), limited);
    CHECK(w.log().find("file descriptors: soft limit 64 (hard 64)") != std::string::npos);
    RawClient open_before(w.port());
    open_before.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(open_before.read_response().status == 200);

    std::vector<std::unique_ptr<RawClient>> idle;
    for (int i = 0; i < 100; ++i) idle.push_back(std::make_unique<RawClient>(w.port()));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the worker runs out meanwhile
    const double cpu0 = cpu_seconds(w.pid());
    const size_t log0 = w.log().size();
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = cpu_seconds(w.pid()) - cpu0;
    const size_t grown = w.log().size() - log0;
    INFO("CPU " << cpu << " s in " << wall << " s; log grew " << grown << " bytes\n" << w.log().substr(0, 4000));
    CHECK(cpu < 0.2 * wall);
    CHECK(grown < 10000);
    CHECK(w.log().find("accept failed: Too many open files") != std::string::npos);

    open_before.send("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");  // still served while out of descriptors
    CHECK(open_before.read_response().status == 200);

    idle.clear();
    const loom::test::HttpReply h = loom::test::http_request(w.port(), "GET", "/health");
    CHECK(h.status == 200);
    CHECK(json::parse(h.body).at("status") == "ok");
}
